/*
 * emu_http.c - the libmicrohttpd front end: request lifecycle, routing, auth, envelopes,
 * latency/fault delivery.
 *
 * Lifecycle of one request (struct emu_req, created in the URI log callback so the raw,
 * undecoded request target is kept, freed in the completion callback):
 *   1. first call: classify (split the raw path on '/', then percent-decode each segment, so
 *      an id "a/b" sent as a%2Fb stays one segment), count the op, refuse bodies whose
 *      declared length exceeds the route's cap (413, connection then closed by MHD);
 *   2. body calls: append to a capped buffer (overflow is remembered, data dropped);
 *   3. last call: rate limit -> faults -> auth -> account -> route -> handler; the handler
 *      fills rq->reply. If the reply must be delayed (--latency-ms, stall fault) the
 *      connection is suspended and emu_delay resumes it later, so a delay never blocks a
 *      pool thread; the reply is then queued (or the connection dropped/truncated).
 *      Direct upload URLs (/upload/<hash>/<id>, like upload.imagedelivery.net) skip the
 *      rate limit and auth; faults and --latency-ms apply to them.
 */
#include "emu.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

const char *const emu_op_names[EMU_OP_COUNT] = {
    "images.list_v1",
    "images.list_v2",
    "images.upload",
    "images.get",
    "images.edit",
    "images.delete",
    "images.blob",
    "keys.list",
    "keys.put",
    "keys.delete",
    "stats.get",
    "variants.list",
    "variants.get",
    "variants.create",
    "variants.edit",
    "variants.delete",
    "images.direct_upload",
    "images.direct_upload_file",
    "images.batch_token",
    "other",
};

typedef void (*emu_handler_fn)(struct emu *e, struct emu_req *rq);

static const emu_handler_fn handlers[EMU_OP_COUNT] = {
    [EMU_OP_LIST_V1] = emu_h_images_list_v1,
    [EMU_OP_LIST_V2] = emu_h_images_list_v2,
    [EMU_OP_UPLOAD] = emu_h_images_upload,
    [EMU_OP_GET] = emu_h_images_get,
    [EMU_OP_EDIT] = emu_h_images_edit,
    [EMU_OP_DELETE] = emu_h_images_delete,
    [EMU_OP_BLOB] = emu_h_images_blob,
    [EMU_OP_KEYS_LIST] = emu_h_keys_list,
    [EMU_OP_KEYS_PUT] = emu_h_keys_put,
    [EMU_OP_KEYS_DELETE] = emu_h_keys_delete,
    [EMU_OP_STATS] = emu_h_stats,
    [EMU_OP_VARIANTS_LIST] = emu_h_variants_list,
    [EMU_OP_VARIANTS_GET] = emu_h_variants_get,
    [EMU_OP_VARIANTS_CREATE] = emu_h_variants_create,
    [EMU_OP_VARIANTS_EDIT] = emu_h_variants_edit,
    [EMU_OP_VARIANTS_DELETE] = emu_h_variants_delete,
    [EMU_OP_DIRECT_UPLOAD] = emu_h_direct_upload,
    [EMU_OP_DIRECT_FILE] = emu_h_direct_file,
    [EMU_OP_BATCH_TOKEN] = emu_h_batch_token,
};

int emu_op_from_name(const char *name)
{
	int i;

	for (i = 0; i < EMU_OP_COUNT; i++) {
		if (strcmp(emu_op_names[i], name) == 0)
			return i;
	}
	return -1;
}

/* ---- replies ---- */

void emu_reply_release(struct emu_reply *r)
{
	if (r->blob)
		emu_blob_unref(r->blob);
	else
		free(r->body);
	r->body = NULL;
	r->blob = NULL;
	r->len = 0;
}

void emu_reply_add_header(struct emu_reply *r, const char *name, const char *value)
{
	unsigned i;

	for (i = 0; i < r->nhdrs; i++) {
		if (strcasecmp(r->hdrs[i].name, name) == 0)
			break;
	}
	if (i == r->nhdrs) {
		if (r->nhdrs == sizeof(r->hdrs) / sizeof(r->hdrs[0]))
			return;
		r->nhdrs++;
	}
	snprintf(r->hdrs[i].name, sizeof(r->hdrs[i].name), "%s", name);
	snprintf(r->hdrs[i].value, sizeof(r->hdrs[i].value), "%s", value);
}

static void set_body(struct emu_req *rq, unsigned status, struct emu_buf *b)
{
	struct emu_reply *r = &rq->reply;

	emu_reply_release(r);
	if (b->err) {
		emu_buf_release(b);
		emu_buf_puts(b, "{\"result\":null,\"success\":false,\"errors\":[{\"code\":5500,"
				"\"message\":\"Internal Server Error\"}],\"messages\":[]}");
		status = 500;
	}
	r->status = status;
	r->ctype = "application/json";
	r->body = emu_buf_steal(b, &r->len);
	r->ready = true;
}

static void error_body(struct emu_buf *b, int code, const char *msg, const char *chain)
{
	emu_buf_printf(
	    b, "{\"result\":null,\"success\":false,\"errors\":[{\"code\":%d,\"message\":", code);
	emu_buf_json_str(b, msg, strlen(msg));
	if (chain)
		emu_buf_puts(b, chain);
	emu_buf_puts(b, "}],\"messages\":[]}");
}

void emu_reply_error(struct emu_req *rq, unsigned status, int code, const char *msg)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	error_body(&b, code, msg, NULL);
	set_body(rq, status, &b);
}

void emu_reply_errorf(struct emu_req *rq, unsigned status, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emu_reply_error(rq, status, code, msg);
}

void emu_reply_result_begin(struct emu_buf *b)
{
	emu_buf_puts(b, "{\"result\":");
}

void emu_reply_result_end(struct emu_req *rq, struct emu_buf *b)
{
	emu_buf_puts(b, ",\"success\":true,\"errors\":[],\"messages\":[]}");
	set_body(rq, 200, b);
}

void emu_reply_result_empty(struct emu_req *rq)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_puts(&b, "{}");
	emu_reply_result_end(rq, &b);
}

void emu_reply_json_buf(struct emu_req *rq, unsigned status, struct emu_buf *b)
{
	set_body(rq, status, b);
}

static void reply_no_route(struct emu_req *rq)
{
	struct emu_buf b, msg;

	emu_buf_init(&msg, 0);
	emu_buf_printf(&msg, "Could not route to %s, perhaps your object identifier is invalid?",
		       rq->path);
	emu_buf_init(&b, 0);
	emu_buf_puts(&b, "{\"result\":null,\"success\":false,\"errors\":[{\"code\":7003,"
			 "\"message\":");
	emu_buf_json_str(&b, msg.data ? msg.data : "", msg.len);
	emu_buf_puts(&b, "},{\"code\":7000,\"message\":\"No route for that URI\"}],"
			 "\"messages\":[]}");
	emu_buf_release(&msg);
	set_body(rq, 404, &b);
}

/* ---- request parsing ---- */

const char *emu_req_query(const struct emu_req *rq, const char *name, size_t *len)
{
	size_t i;

	for (i = 0; i < rq->nquery; i++) {
		if (strcmp(rq->query[i].name, name) == 0) {
			if (len)
				*len = rq->query[i].vlen;
			return rq->query[i].value;
		}
	}
	return NULL;
}

const char *emu_req_header(const struct emu_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

static void parse_query(struct emu_req *rq, const char *q)
{
	while (*q) {
		const char *amp = strchr(q, '&'), *eq;
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		struct emu_query *qp;

		if (n) {
			if (rq->nquery == EMU_MAX_QUERY_PARAMS) {
				rq->query_bad = true;
				return;
			}
			qp = &rq->query[rq->nquery];
			eq = memchr(q, '=', n);
			qp->name = emu_pct_decode(q, eq ? (size_t)(eq - q) : n, true, NULL);
			qp->value =
			    eq ? emu_pct_decode(eq + 1, n - (size_t)(eq + 1 - q), true, &qp->vlen)
			       : calloc(1, 1);
			if (!qp->name || !qp->value) {
				free(qp->name);
				free(qp->value);
				rq->query_bad = true;
				return;
			}
			rq->nquery++;
		}
		q += n;
		if (*q == '&')
			q++;
	}
}

struct emu_route {
	bool v2;
	size_t nseg;
	const char *seg0;   /* NULL: any (an id) */
	const char *seg1;   /* NULL: any */
	const char *method; /* NULL: any; "GET" also matches HEAD */
	enum emu_op op;
};

/* Segments after images/v1 or images/v2; the first matching row wins. The op-less rows make
 * keys/stats/variants/direct_upload/batch_token/config reserved words (no image op on an id
 * spelled like them: the real API owns those routes). */
static const struct emu_route routes[] = {
    {true, 0, NULL, NULL, "GET", EMU_OP_LIST_V2},
    {true, 1, "direct_upload", NULL, "POST", EMU_OP_DIRECT_UPLOAD},
    {false, 1, "direct_upload", NULL, "POST", EMU_OP_DIRECT_UPLOAD},
    {false, 1, "direct_upload", NULL, NULL, EMU_OP_OTHER},
    {false, 0, NULL, NULL, "GET", EMU_OP_LIST_V1},
    {false, 0, NULL, NULL, "POST", EMU_OP_UPLOAD},
    {false, 1, "keys", NULL, "GET", EMU_OP_KEYS_LIST},
    {false, 1, "stats", NULL, "GET", EMU_OP_STATS},
    {false, 1, "variants", NULL, "GET", EMU_OP_VARIANTS_LIST},
    {false, 1, "variants", NULL, "POST", EMU_OP_VARIANTS_CREATE},
    {false, 1, "keys", NULL, NULL, EMU_OP_OTHER},
    {false, 1, "stats", NULL, NULL, EMU_OP_OTHER},
    {false, 1, "variants", NULL, NULL, EMU_OP_OTHER},
    {false, 1, "batch_token", NULL, "GET", EMU_OP_BATCH_TOKEN},
    {false, 1, "batch_token", NULL, NULL, EMU_OP_OTHER},
    {false, 1, "config", NULL, NULL, EMU_OP_OTHER},
    {false, 1, NULL, NULL, "GET", EMU_OP_GET},
    {false, 1, NULL, NULL, "PATCH", EMU_OP_EDIT},
    {false, 1, NULL, NULL, "DELETE", EMU_OP_DELETE},
    {false, 2, "keys", NULL, "PUT", EMU_OP_KEYS_PUT},
    {false, 2, "keys", NULL, "DELETE", EMU_OP_KEYS_DELETE},
    {false, 2, "variants", NULL, "GET", EMU_OP_VARIANTS_GET},
    {false, 2, "variants", NULL, "PATCH", EMU_OP_VARIANTS_EDIT},
    {false, 2, "variants", NULL, "DELETE", EMU_OP_VARIANTS_DELETE},
    {false, 2, "keys", NULL, NULL, EMU_OP_OTHER},
    {false, 2, "variants", NULL, NULL, EMU_OP_OTHER},
    {false, 2, NULL, "blob", "GET", EMU_OP_BLOB},
};

static bool method_is(const char *m, const char *want)
{
	return !want || !strcmp(m, want) || (!strcmp(want, "GET") && !strcmp(m, "HEAD"));
}

/* Maps (method, segments after images/vN) to an op; EMU_OP_OTHER when unknown. */
static enum emu_op route(const struct emu_req *rq, bool v2)
{
	size_t i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct emu_route *r = &routes[i];

		if (r->v2 == v2 && r->nseg == rq->nseg &&
		    (!r->seg0 || !strcmp(rq->seg[0], r->seg0)) &&
		    (!r->seg1 || !strcmp(rq->seg[1], r->seg1)) && method_is(rq->method, r->method))
			return r->op;
	}
	return EMU_OP_OTHER;
}

/* Splits a raw path into at most n raw segments (the last one keeps any further '/'). */
static size_t split_raw(const char *rest, const char **raw, size_t *rawlen, size_t n)
{
	size_t nraw = 0;

	while (nraw < n) {
		const char *sl = strchr(rest, '/');

		raw[nraw] = rest;
		rawlen[nraw] = sl ? (size_t)(sl - rest) : strlen(rest);
		nraw++;
		if (!sl)
			break;
		rest = sl + 1;
	}
	return nraw;
}

static bool seg_is(const char *raw, size_t len, const char *want)
{
	return len == strlen(want) && !memcmp(raw, want, len);
}

/* Decodes the segments after images/vN (raw[first..]) and routes them. */
static void route_segments(struct emu_req *rq, const char **raw, const size_t *rawlen, size_t first,
			   size_t nraw)
{
	size_t i;

	for (i = first; i < nraw; i++) {
		if (rawlen[i] == 0)
			return; /* empty segment (double or trailing slash) */
		rq->seg[rq->nseg] = emu_pct_decode(raw[i], rawlen[i], false, &rq->seglen[rq->nseg]);
		if (!rq->seg[rq->nseg])
			return;
		rq->nseg++;
	}
	rq->op = route(rq, rq->v2);
	rq->route_ok = rq->op != EMU_OP_OTHER;
}

/* Splits the raw path (after "/client/v4/") into decoded segments and routes it. */
static void classify_api(struct emu_req *rq, const char *rest)
{
	const char *raw[EMU_MAX_SEGMENTS + 4];
	size_t rawlen[EMU_MAX_SEGMENTS + 4], nraw;

	rq->op = EMU_OP_OTHER;
	nraw = split_raw(rest, raw, rawlen, EMU_MAX_SEGMENTS + 4);
	if (nraw < 4 || strchr(raw[nraw - 1], '/') || !seg_is(raw[0], rawlen[0], "accounts") ||
	    !seg_is(raw[2], rawlen[2], "images") ||
	    (!seg_is(raw[3], rawlen[3], "v1") && !seg_is(raw[3], rawlen[3], "v2")))
		return;
	rq->v2 = raw[3][1] == '2';
	rq->account = emu_pct_decode(raw[1], rawlen[1], false, NULL);
	if (!rq->account)
		return;
	route_segments(rq, raw, rawlen, 4, nraw);
}

/* The batch host: "/images/v1..." at the root, no account in the path (the token names
 * it). Only the covered operations are routed. */
static void classify_batch(struct emu *e, struct emu_req *rq, const char *rest)
{
	const char *raw[EMU_MAX_SEGMENTS + 2];
	size_t rawlen[EMU_MAX_SEGMENTS + 2], nraw;

	rq->op = EMU_OP_OTHER;
	nraw = split_raw(rest, raw, rawlen, EMU_MAX_SEGMENTS + 2);
	if (nraw < 2 || strchr(raw[nraw - 1], '/') || !seg_is(raw[0], rawlen[0], "images") ||
	    (!seg_is(raw[1], rawlen[1], "v1") && !seg_is(raw[1], rawlen[1], "v2")))
		return;
	rq->v2 = raw[1][1] == '2';
	rq->account = strdup(e->account);
	if (!rq->account)
		return;
	route_segments(rq, raw, rawlen, 2, nraw);
	if (rq->route_ok && !emu_batch_op_covered(rq)) {
		rq->op = EMU_OP_OTHER;
		rq->route_ok = false;
	}
}

/* /upload/<hash>/<id>: seg[0] = hash, seg[1] = the rest decoded as one id (so both a%2Fb
 * and a/b name the id "a/b"). Only POST is routed. */
static void classify_upload(struct emu_req *rq, const char *rest)
{
	const char *sl = strchr(rest, '/');

	rq->op = EMU_OP_OTHER;
	if (!sl || sl == rest || !sl[1] || strcmp(rq->method, "POST"))
		return;
	rq->seg[0] = emu_pct_decode(rest, (size_t)(sl - rest), false, &rq->seglen[0]);
	if (!rq->seg[0])
		return;
	rq->nseg = 1;
	rq->seg[1] = emu_pct_decode(sl + 1, strlen(sl + 1), false, &rq->seglen[1]);
	if (!rq->seg[1])
		return;
	rq->nseg = 2;
	rq->op = EMU_OP_DIRECT_FILE;
	rq->route_ok = true;
}

static void classify(struct emu *e, struct emu_req *rq)
{
	char *q = strchr(rq->uri, '?');
	size_t plen = q ? (size_t)(q - rq->uri) : strlen(rq->uri);

	rq->path = strndup(rq->uri, plen);
	if (!rq->path)
		return;
	if (q)
		parse_query(rq, q + 1);
	if (strncmp(rq->path, "/__emulator/", 12) == 0) {
		rq->is_admin = true;
	} else if (strncmp(rq->path, "/client/v4/", 11) == 0 || !strcmp(rq->path, "/client/v4")) {
		rq->is_api = true;
		if (rq->path[10] == '/')
			classify_api(rq, rq->path + 11);
		else
			rq->op = EMU_OP_OTHER;
		atomic_fetch_add_explicit(&e->ops[rq->op], 1, memory_order_relaxed);
	} else if (emu_delivery_match(&e->delivery, rq->path)) {
		rq->is_delivery = true;
	} else if (strncmp(rq->path, "/upload/", 8) == 0) {
		rq->is_upload = true;
		classify_upload(rq, rq->path + 8);
		atomic_fetch_add_explicit(&e->ops[rq->op], 1, memory_order_relaxed);
	} else if (strncmp(rq->path, "/images/", 8) == 0) {
		rq->is_batch = true;
		classify_batch(e, rq, rq->path + 1);
		atomic_fetch_add_explicit(&e->batch.ops[rq->op], 1, memory_order_relaxed);
	}
	rq->body.max = (rq->op == EMU_OP_UPLOAD || rq->op == EMU_OP_DIRECT_FILE) && rq->route_ok
			   ? EMU_UPLOAD_BODY_CAP
			   : EMU_JSON_BODY_CAP;
}

/* ---- auth ---- */

static bool token_ok(const char *tok, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)tok[i];

		if (c <= 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static bool str_eq_ct(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* Returns true when a failure reply was set. */
static bool check_auth(struct emu *e, struct emu_req *rq)
{
	const char *authz = emu_req_header(rq, "Authorization");
	const char *key, *email;
	size_t i;

	if (authz) {
		const char *tok = authz + 7;

		if (strncasecmp(authz, "Bearer ", 7) != 0 || !token_ok(tok, strlen(tok))) {
			struct emu_buf b;

			emu_buf_init(&b, 0);
			error_body(&b, 6003, "Invalid request headers",
				   ",\"error_chain\":[{\"code\":6111,\"message\":\"Invalid format "
				   "for Authorization header\"}]");
			set_body(rq, 400, &b);
			return true;
		}
		for (i = 0; i < e->ntokens; i++) {
			if (str_eq_ct(tok, e->tokens[i]))
				return false;
		}
		emu_reply_error(rq, 401, 10000, "Authentication error");
		return true;
	}
	key = emu_req_header(rq, "X-Auth-Key");
	email = emu_req_header(rq, "X-Auth-Email");
	if (!key || !email) {
		emu_reply_error(rq, 400, 9106,
				"Missing X-Auth-Key, X-Auth-Email or Authorization headers");
		return true;
	}
	for (i = 0; i < e->nauthkeys; i++) {
		if (str_eq_ct(email, e->authkeys[i].email) && str_eq_ct(key, e->authkeys[i].key))
			return false;
	}
	emu_reply_error(rq, 401, 10000, "Authentication error");
	return true;
}

/* Auth, account and route checks; true when a failure reply was set. */
static bool pre_checks(struct emu *e, struct emu_req *rq)
{
	if (check_auth(e, rq))
		return true;
	if (!rq->route_ok || strcmp(rq->account, e->account) != 0) {
		reply_no_route(rq);
		return true;
	}
	return false;
}

static void reply_too_large(struct emu_req *rq)
{
	if (rq->op == EMU_OP_UPLOAD || rq->op == EMU_OP_DIRECT_FILE)
		emu_reply_error(rq, 413, 5413, "Maximum image size of 10 MB is reached");
	else
		emu_reply_error(rq, 413, 5400, "Request body too large");
}

struct json_object *emu_req_json_object(struct emu_req *rq)
{
	struct json_object *o = emu_json_parse(rq->body.data, rq->body.len);

	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		emu_reply_error(rq, 400, 5400, "Request body must be a JSON object");
		return NULL;
	}
	return o;
}

/* ---- processing ---- */

static void process_api(struct emu *e, struct emu_req *rq)
{
	struct emu_fault_hit hit;
	long retry = 0;
	bool after = false;

	if (rq->is_batch && !rq->route_ok) {
		reply_no_route(rq);
		return;
	}
	if (rq->is_batch
		? emu_batch_check(e, rq)
		: !rq->is_upload && !emu_faults_rate_charge(&e->faults, &rq->reply, &retry)) {
		if (rq->is_batch)
			return;
		char ra[24];

		snprintf(ra, sizeof(ra), "%ld", retry);
		emu_reply_add_header(&rq->reply, "Retry-After", ra);
		emu_reply_error(rq, 429, 971,
				"Please wait and consider throttling your request speed");
		return;
	}
	if (emu_faults_match(&e->faults, rq->op, &hit)) {
		if (!hit.after && hit.mode != EMU_FAULT_STALL && hit.mode != EMU_FAULT_TRUNCATE) {
			emu_faults_apply(rq, &hit);
			return;
		}
		after = true;
	}
	if (rq->is_upload && !rq->route_ok)
		emu_reply_error(rq, 404, 5404, "Upload URL not found");
	else if (rq->is_upload || rq->is_batch || !pre_checks(e, rq)) {
		if (rq->body_overflow)
			reply_too_large(rq);
		else
			handlers[rq->op](e, rq);
	}
	if (after)
		emu_faults_apply(rq, &hit);
}

static void process(struct emu *e, struct emu_req *rq)
{
	if (rq->is_admin) {
		if (rq->body_overflow)
			reply_too_large(rq);
		else
			emu_h_admin(e, rq);
	} else if (rq->is_delivery) {
		emu_h_delivery(e, rq);
	} else if (rq->is_api || rq->is_upload || rq->is_batch) {
		process_api(e, rq);
		if (e->latency_ms > 0)
			rq->reply.delay_ms += e->latency_ms;
	} else {
		reply_no_route(rq);
	}
	if (!rq->reply.ready)
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
}

/* ---- delivery ---- */

struct trunc_ctx {
	struct emu_reply r;
	size_t send;
};

static ssize_t trunc_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct trunc_ctx *t = cls;
	size_t n;

	if (pos >= t->send)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	n = t->send - (size_t)pos;
	if (n > max)
		n = max;
	memcpy(buf, t->r.body + pos, n);
	return (ssize_t)n;
}

static void trunc_free(void *cls)
{
	struct trunc_ctx *t = cls;

	emu_reply_release(&t->r);
	free(t);
}

static void blob_free(void *cls)
{
	emu_blob_unref(cls);
}

static struct MHD_Response *make_response(struct emu_reply *r)
{
	struct MHD_Response *resp;

	if (r->delivery == EMU_FAULT_TRUNCATE) {
		struct trunc_ctx *t = calloc(1, sizeof(*t));

		if (!t)
			return NULL;
		t->r = *r;
		t->send = r->len / 2;
		resp =
		    MHD_create_response_from_callback(r->len, 64 * 1024, trunc_read, t, trunc_free);
		if (!resp)
			free(t);
	} else if (r->blob) {
		resp = MHD_create_response_from_buffer_with_free_callback_cls(r->len, r->body,
									      blob_free, r->blob);
	} else {
		resp = MHD_create_response_from_buffer_with_free_callback(r->len, r->body, free);
	}
	if (resp) {
		r->body = NULL; /* the response owns the body now */
		r->blob = NULL;
	}
	return resp;
}

static enum MHD_Result deliver(struct emu *e, struct emu_req *rq)
{
	struct emu_reply *r = &rq->reply;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	unsigned i;

	if (r->delivery == EMU_FAULT_CLOSE)
		return MHD_NO;
	if (r->status == 429)
		atomic_fetch_add_explicit(rq->is_batch ? &e->sent_429_batch : &e->sent_429, 1,
					  memory_order_relaxed);
	resp = make_response(r);
	if (!resp)
		return MHD_NO;
	if (r->ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
	for (i = 0; i < r->nhdrs; i++)
		MHD_add_response_header(resp, r->hdrs[i].name, r->hdrs[i].value);
	ret = MHD_queue_response(rq->conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result finish(struct emu *e, struct emu_req *rq)
{
	if (rq->suspended) {
		rq->suspended = false;
		return deliver(e, rq);
	}
	if (!rq->reply.ready)
		process(e, rq);
	if (rq->reply.delay_ms > 0) {
		rq->suspended = true;
		MHD_suspend_connection(rq->conn);
		if (emu_delay_schedule(&e->delay, rq->conn, rq->reply.delay_ms))
			MHD_resume_connection(rq->conn);
		return MHD_YES;
	}
	return deliver(e, rq);
}

static void take_body(struct emu_req *rq, const char *data, size_t n)
{
	if (rq->body_overflow || rq->body.len + n > rq->body.max) {
		rq->body_overflow = true;
		emu_buf_release(&rq->body);
		return;
	}
	emu_buf_add(&rq->body, data, n);
	if (rq->body.err)
		rq->body_overflow = true;
}

/* Per connection: whether it has carried an API request yet (e->connections). */
struct emu_conn {
	bool counted;
};

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)conn;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, sizeof(struct emu_conn));
	} else {
		free(*socket_context);
		*socket_context = NULL;
	}
}

/* Counts the connection of an API request (global or batch) the first time it carries one. */
static void count_connection(struct emu *e, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct emu_conn *c = ci ? ci->socket_context : NULL;

	if (c && !c->counted) {
		c->counted = true;
		atomic_fetch_add_explicit(&e->connections, 1, memory_order_relaxed);
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct emu *e = cls;
	struct emu_req *rq = *con_cls;
	const char *cl;

	if (!rq)
		return MHD_NO;
	if (!rq->started) {
		rq->started = true;
		rq->method = method;
		classify(e, rq);
		if (!rq->path)
			return MHD_NO;
		if (rq->is_api || rq->is_batch)
			count_connection(e, conn);
		cl = emu_req_header(rq, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > rq->body.max) {
			/* refuse now instead of reading it; MHD closes the connection after */
			if (rq->is_batch ? !emu_batch_check(e, rq)
					 : !rq->is_api || !pre_checks(e, rq))
				reply_too_large(rq);
			return deliver(e, rq);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		take_body(rq, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	return finish(e, rq);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct emu_req *rq = calloc(1, sizeof(*rq));

	if (!rq)
		return NULL;
	rq->uri = strdup(uri);
	if (!rq->uri) {
		free(rq);
		return NULL;
	}
	rq->conn = conn;
	emu_buf_init(&rq->body, EMU_JSON_BODY_CAP);
	return rq;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct emu_req *rq = *con_cls;
	size_t i;

	if (!rq)
		return;
	for (i = 0; i < rq->nseg; i++)
		free(rq->seg[i]);
	for (i = 0; i < rq->nquery; i++) {
		free(rq->query[i].name);
		free(rq->query[i].value);
	}
	free(rq->account);
	free(rq->path);
	free(rq->uri);
	emu_buf_release(&rq->body);
	emu_reply_release(&rq->reply);
	free(rq);
	*con_cls = NULL;
}

static int resolve(const char *host, unsigned port, struct sockaddr_storage *ss, bool *v6)
{
	struct addrinfo hints = {0}, *res = NULL;
	char ps[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(ps, sizeof(ps), "%u", port);
	rc = getaddrinfo(host, ps, &hints, &res);
	if (rc || !res) {
		fprintf(stderr, "imagesfs-emulator: cannot resolve listen host '%s': %s\n", host,
			gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*v6 = res->ai_family == AF_INET6;
	freeaddrinfo(res);
	return 0;
}

int emu_http_start(struct emu *e)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ERROR_LOG;
	bool v6 = false;

	if (resolve(e->listen_host, e->listen_port, &ss, &v6))
		return -EINVAL;
	if (v6)
		flags |= MHD_USE_IPv6;
	e->daemon = MHD_start_daemon(
	    flags, (uint16_t)e->listen_port, NULL, NULL, on_request, e, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&ss, MHD_OPTION_URI_LOG_CALLBACK, on_uri, e,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, e, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, e, MHD_OPTION_THREAD_POOL_SIZE, e->threads,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)4000, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
	if (!e->daemon) {
		fprintf(stderr, "imagesfs-emulator: cannot listen on %s:%u\n", e->listen_host,
			e->listen_port);
		return -EADDRINUSE;
	}
	info = MHD_get_daemon_info(e->daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info && info->port)
		e->listen_port = info->port;
	return 0;
}

void emu_http_stop(struct emu *e)
{
	if (!e->daemon)
		return;
	atomic_store(&e->stopping, true);
	emu_delay_stop(&e->delay);
	MHD_stop_daemon(e->daemon);
	e->daemon = NULL;
	emu_delay_release(&e->delay);
}

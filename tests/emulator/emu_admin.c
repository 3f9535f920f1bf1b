/*
 * emu_admin.c - /__emulator/ endpoints (no auth, plain JSON, never counted in the op stats):
 *
 *   GET    /__emulator/health        {"ok":true,"images":N}
 *   GET    /__emulator/stats         {"total":N,"ops":{"images.list_v1":N,...,"other":N},
 *                                     "batch_ops":{"batch.images.upload":N,...},
 *                                     "batch_total":N,"batch_refused":N,"sent_429":N,
 *                                     "sent_429_batch":N,"batch_tokens_live":N,"connections":N,
 *                                     "delivery":{"requests":N,"ok":N,"denied":N,"not_found":N}}
 *                                     (total: global API; batch_*: the batch host)
 *   POST   /__emulator/stats/reset   {"ok":true} (every counter, delivery included)
 *   GET    /__emulator/delivery      {"requests":[{"uri":..,"status":N,"credentials":B},...]}: the
 *                                    last 256 delivery requests, oldest first
 *   POST   /__emulator/batch_tokens/expire  {"expired":N}: every live batch token expires now
 *   POST   /__emulator/seed          {"count":N,"prefix":"seed-","size":100,"start":0}
 *                                    -> {"created":N,"first":"seed-000000","last":"..."}
 *   GET    /__emulator/faults        {"rules":[...],"rate_limit":{limit,window,used}}
 *   POST   /__emulator/faults        one rule object or an array of them -> {"ok":true,..}
 *   DELETE /__emulator/faults        clears every rule -> {"ok":true}
 *   GET    /__emulator/ratelimit     {"limit":N,"window":S,"used":N}
 *   POST   /__emulator/ratelimit     {"limit":N,"window":S} (limit 0 disables)
 *   GET    /__emulator/drafts        {"drafts":N}: direct-upload drafts held (expired ones
 *                                    not yet removed lazily included)
 *   POST   /__emulator/drafts/expire {"expired":N}: every pending draft expires now (test hook)
 * Errors: {"error":"<message>"} with 400 (bad input), 404 (unknown path), 405 (method),
 * 409 (seed id exists), 403 (seed beyond --allowed).
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_MAX_COUNT 1000000L
#define SEED_MAX_PREFIX 900
#define SEED_DEFAULT_SIZE 100L

static void admin_error(struct emu_req *rq, unsigned status, const char *msg)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_buf_puts(&b, "{\"error\":");
	emu_buf_json_str(&b, msg, strlen(msg));
	emu_buf_puts(&b, "}");
	emu_reply_json_buf(rq, status, &b);
}

static void admin_ok(struct emu_req *rq)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_buf_puts(&b, "{\"ok\":true}");
	emu_reply_json_buf(rq, 200, &b);
}

static struct json_object *admin_json(struct emu_req *rq)
{
	struct json_object *o = emu_json_parse(rq->body.data, rq->body.len);

	if (!o)
		admin_error(rq, 400, "body must be JSON");
	return o;
}

/* The operations the batch host serves (and "other" for its unknown paths). */
static bool batch_op_listed(int op)
{
	return op == EMU_OP_UPLOAD || op == EMU_OP_GET || op == EMU_OP_EDIT ||
	       op == EMU_OP_DELETE || op == EMU_OP_LIST_V2 || op == EMU_OP_DIRECT_UPLOAD ||
	       op == EMU_OP_OTHER;
}

static void h_stats(struct emu *e, struct emu_req *rq)
{
	struct emu_buf b;
	unsigned long total = 0, batch = 0, v;
	int i, batch_n = 0;

	emu_buf_init(&b, 0);
	emu_buf_puts(&b, "{\"ops\":{");
	for (i = 0; i < EMU_OP_COUNT; i++) {
		v = atomic_load_explicit(&e->ops[i], memory_order_relaxed);
		total += v;
		emu_buf_printf(&b, "%s\"%s\":%lu", i ? "," : "", emu_op_names[i], v);
	}
	emu_buf_printf(&b, "},\"total\":%lu,\"batch_ops\":{", total);
	for (i = 0; i < EMU_OP_COUNT; i++) {
		if (!batch_op_listed(i))
			continue;
		v = atomic_load_explicit(&e->batch.ops[i], memory_order_relaxed);
		batch += v;
		emu_buf_printf(&b, "%s\"batch.%s\":%lu", batch_n++ ? "," : "", emu_op_names[i], v);
	}
	emu_buf_printf(&b,
		       "},\"batch_total\":%lu,\"batch_refused\":%lu,\"sent_429\":%lu,"
		       "\"sent_429_batch\":%lu,\"batch_tokens_live\":%zu,\"connections\":%lu",
		       batch, atomic_load_explicit(&e->batch.refused, memory_order_relaxed),
		       atomic_load_explicit(&e->sent_429, memory_order_relaxed),
		       atomic_load_explicit(&e->sent_429_batch, memory_order_relaxed),
		       emu_batch_live(&e->batch),
		       atomic_load_explicit(&e->connections, memory_order_relaxed));
	emu_delivery_stats_json(&e->delivery, &b);
	emu_buf_puts(&b, "}");
	emu_reply_json_buf(rq, 200, &b);
}

static void h_stats_reset(struct emu *e, struct emu_req *rq)
{
	int i;

	for (i = 0; i < EMU_OP_COUNT; i++) {
		atomic_store_explicit(&e->ops[i], 0, memory_order_relaxed);
		atomic_store_explicit(&e->batch.ops[i], 0, memory_order_relaxed);
	}
	atomic_store_explicit(&e->sent_429, 0, memory_order_relaxed);
	atomic_store_explicit(&e->sent_429_batch, 0, memory_order_relaxed);
	atomic_store_explicit(&e->connections, 0, memory_order_relaxed);
	atomic_store_explicit(&e->batch.refused, 0, memory_order_relaxed);
	emu_delivery_stats_reset(&e->delivery);
	admin_ok(rq);
}

/* ---- seeding: tiny valid PNGs (1x1 gray, distinct pixel + tEXt) ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	uint32_t c, n, k;

	for (n = 0; n < 256; n++) {
		c = n;
		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static unsigned char *put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
	return p + 4;
}

/* Writes chunk (type, data) at p; returns the end. */
static unsigned char *chunk(unsigned char *p, const char *type, const unsigned char *d, size_t n)
{
	unsigned char *start = p + 4;

	p = put32(p, (uint32_t)n);
	memcpy(p, type, 4);
	if (n)
		memcpy(p + 4, d, n);
	p += 4 + n;
	return put32(p, crc32_of(start, n + 4));
}

#define PNG_FIXED 70u	      /* signature + IHDR + IDAT + IEND */
#define PNG_TEXT_OVERHEAD 20u /* chunk framing + "Comment\0" */

static struct emu_blob *make_png(const char *id, size_t want, unsigned pixel)
{
	static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
	unsigned char ihdr[13] = {0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0};
	/* zlib, one stored deflate block of 2 bytes (filter 0, pixel), adler32 */
	unsigned char idat[13] = {0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0};
	size_t tlen = strlen(id) + 5, size;
	struct emu_blob *b;
	unsigned char *p, *text;
	uint32_t a = 1, bsum = 0;

	if (want < PNG_FIXED + PNG_TEXT_OVERHEAD + tlen)
		want = PNG_FIXED + PNG_TEXT_OVERHEAD + tlen;
	size = want;
	tlen = size - PNG_FIXED - PNG_TEXT_OVERHEAD;
	b = emu_blob_new(NULL, size);
	text = malloc(8 + tlen);
	if (!b || !text) {
		emu_blob_unref(b);
		free(text);
		return NULL;
	}
	idat[8] = (unsigned char)pixel;
	a = (a + idat[7]) % 65521;
	bsum = (bsum + a) % 65521;
	a = (a + idat[8]) % 65521;
	bsum = (bsum + a) % 65521;
	put32(idat + 9, bsum << 16 | a);
	memcpy(text, "Comment", 8);
	memset(text + 8, '.', tlen);
	memcpy(text + 8, "seed ", 5);
	memcpy(text + 13, id, strlen(id));
	p = b->data;
	memcpy(p, sig, 8);
	p = chunk(p + 8, "IHDR", ihdr, sizeof(ihdr));
	p = chunk(p, "tEXt", text, 8 + tlen);
	p = chunk(p, "IDAT", idat, sizeof(idat));
	chunk(p, "IEND", NULL, 0);
	free(text);
	return b;
}

struct seed_args {
	long count;
	long size;
	long start;
	const char *prefix;
	int width;
};

static const char *seed_parse(struct json_object *o, struct seed_args *a)
{
	struct json_object *v;
	long last;

	a->count = 0;
	a->size = SEED_DEFAULT_SIZE;
	a->start = 0;
	a->prefix = "seed-";
	if (!json_object_object_get_ex(o, "count", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 1 || json_object_get_int64(v) > SEED_MAX_COUNT)
		return "count must be an integer between 1 and 1000000";
	a->count = (long)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "size", &v)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		    json_object_get_int64(v) > (int64_t)EMU_MAX_IMAGE_BYTES)
			return "size must be an integer between 0 and 10485760";
		a->size = (long)json_object_get_int64(v);
	}
	if (json_object_object_get_ex(o, "start", &v)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		    json_object_get_int64(v) > 1000000000L)
			return "start must be an integer between 0 and 1000000000";
		a->start = (long)json_object_get_int64(v);
	}
	if (json_object_object_get_ex(o, "prefix", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return "prefix must be a string";
		a->prefix = json_object_get_string(v);
	}
	if (strlen(a->prefix) > SEED_MAX_PREFIX || a->prefix[0] == '/' ||
	    emu_has_ctl(a->prefix, strlen(a->prefix)) ||
	    !emu_utf8_valid(a->prefix, strlen(a->prefix)))
		return "prefix must be valid UTF-8 without control characters, not start with '/' "
		       "and be at most 900 bytes";
	last = a->start + a->count - 1;
	for (a->width = 6; last >= 1000000 && a->width < 10; a->width++)
		last /= 10;
	return NULL;
}

static struct emu_image *seed_image(const struct seed_args *a, long idx)
{
	struct emu_image *im = calloc(1, sizeof(*im));
	char num[16];
	size_t plen = strlen(a->prefix);

	if (!im)
		return NULL;
	snprintf(num, sizeof(num), "%0*ld", a->width, idx);
	im->idlen = plen + strlen(num);
	im->id = malloc(im->idlen + 1);
	im->filename = malloc(im->idlen + 5);
	if (im->id && im->filename) {
		snprintf(im->id, im->idlen + 1, "%s%s", a->prefix, num);
		snprintf(im->filename, im->idlen + 5, "%s.png", im->id);
		im->blob = make_png(im->id, (size_t)a->size, (unsigned)idx);
	}
	if (!im->blob) {
		emu_image_free(im);
		return NULL;
	}
	return im;
}

static int seed_persist(struct emu *e, const struct seed_args *a, const int64_t *ms)
{
	char id[SEED_MAX_PREFIX + 16];
	long i;
	int rc = 0;

	for (i = 0; i < a->count && !rc; i++) {
		int n = snprintf(id, sizeof(id), "%s%0*ld", a->prefix, a->width, a->start + i);

		rc = emu_persist_sync_image(e->persist, &e->store, id, (size_t)n, ms[i], false);
	}
	emu_persist_flush(e->persist);
	return rc;
}

static void seed_reply(struct emu_req *rq, const struct seed_args *a)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_buf_printf(&b, "{\"created\":%ld,\"first\":\"", a->count);
	emu_buf_printf(&b, "%s%0*ld", a->prefix, a->width, a->start);
	emu_buf_puts(&b, "\",\"last\":\"");
	emu_buf_printf(&b, "%s%0*ld", a->prefix, a->width, a->start + a->count - 1);
	emu_buf_puts(&b, "\"}");
	emu_reply_json_buf(rq, 200, &b);
}

static void h_seed(struct emu *e, struct emu_req *rq)
{
	struct json_object *o = admin_json(rq);
	struct emu_image **ims = NULL;
	int64_t *ms = NULL;
	struct seed_args a;
	const char *why;
	long i, made = 0;
	int rc = -ENOMEM;

	if (!o)
		return;
	pthread_once(&crc_once, crc_init);
	why = seed_parse(o, &a);
	if (why) {
		admin_error(rq, 400, why);
		goto out;
	}
	ims = calloc((size_t)a.count, sizeof(*ims));
	ms = calloc((size_t)a.count, sizeof(*ms));
	for (i = 0; ims && ms && i < a.count; i++, made++) {
		ims[i] = seed_image(&a, a.start + i);
		if (!ims[i])
			break;
	}
	if (made == a.count)
		rc = emu_store_insert_many(&e->store, ims, (size_t)a.count, ms);
	if (rc) {
		for (i = 0; i < made; i++)
			emu_image_free(ims[i]);
		admin_error(rq,
			    rc == -EEXIST   ? 409
			    : rc == -ENOSPC ? 403
					    : 500,
			    rc == -EEXIST   ? "an image with one of the seed ids exists already"
			    : rc == -ENOSPC ? "seeding would exceed --allowed"
					    : "out of memory");
		goto out;
	}
	if (e->persist && seed_persist(e, &a, ms)) {
		admin_error(rq, 500, "cannot persist seeded images");
		goto out;
	}
	seed_reply(rq, &a);
out:
	free(ims);
	free(ms);
	json_object_put(o);
}

static void h_faults_post(struct emu *e, struct emu_req *rq)
{
	struct json_object *o = admin_json(rq);
	char err[256] = "";
	int rc;

	if (!o)
		return;
	rc = emu_faults_add_json(&e->faults, o, err, sizeof(err));
	json_object_put(o);
	if (rc)
		admin_error(rq, 400, err);
	else
		admin_ok(rq);
}

static void h_faults_get(struct emu *e, struct emu_req *rq)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_faults_to_json(&e->faults, &b);
	emu_reply_json_buf(rq, 200, &b);
}

static void h_ratelimit(struct emu *e, struct emu_req *rq, bool post)
{
	struct json_object *o, *v;
	struct emu_buf b;
	long limit = 0, window = 300;

	if (post) {
		o = admin_json(rq);
		if (!o)
			return;
		if (json_object_object_get_ex(o, "limit", &v))
			limit = (long)json_object_get_int64(v);
		if (json_object_object_get_ex(o, "window", &v))
			window = (long)json_object_get_int64(v);
		json_object_put(o);
		if (emu_faults_set_rate(&e->faults, limit, window)) {
			admin_error(rq, 400, "limit must be >= 0 and window >= 1");
			return;
		}
	}
	emu_buf_init(&b, 0);
	pthread_mutex_lock(&e->faults.lock);
	emu_buf_printf(&b, "{\"limit\":%ld,\"window\":%ld,\"used\":%ld}", e->faults.rl_limit,
		       e->faults.rl_window_s, e->faults.rl_used);
	pthread_mutex_unlock(&e->faults.lock);
	emu_reply_json_buf(rq, 200, &b);
}

void emu_h_admin(struct emu *e, struct emu_req *rq)
{
	const char *p = rq->path + 12, *m = rq->method;
	bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
	struct emu_buf b;

	if (!strcmp(p, "health") && get) {
		emu_buf_init(&b, 0);
		emu_buf_printf(&b, "{\"ok\":true,\"images\":%zu}", emu_store_count(&e->store));
		emu_reply_json_buf(rq, 200, &b);
	} else if (!strcmp(p, "stats") && get) {
		h_stats(e, rq);
	} else if (!strcmp(p, "stats/reset") && post) {
		h_stats_reset(e, rq);
	} else if (!strcmp(p, "delivery") && get) {
		emu_buf_init(&b, 0);
		emu_delivery_log_json(&e->delivery, &b);
		emu_reply_json_buf(rq, 200, &b);
	} else if (!strcmp(p, "seed") && post) {
		h_seed(e, rq);
	} else if (!strcmp(p, "faults") && post) {
		h_faults_post(e, rq);
	} else if (!strcmp(p, "faults") && get) {
		h_faults_get(e, rq);
	} else if (!strcmp(p, "faults") && !strcmp(m, "DELETE")) {
		emu_faults_clear(&e->faults);
		admin_ok(rq);
	} else if (!strcmp(p, "ratelimit") && (get || post)) {
		h_ratelimit(e, rq, post);
	} else if (!strcmp(p, "drafts") && get) {
		emu_buf_init(&b, 0);
		emu_buf_printf(&b, "{\"drafts\":%zu}", emu_store_draft_count(&e->store));
		emu_reply_json_buf(rq, 200, &b);
	} else if (!strcmp(p, "drafts/expire") && post) {
		emu_buf_init(&b, 0);
		emu_buf_printf(&b, "{\"expired\":%zu}", emu_store_expire_drafts(&e->store));
		emu_reply_json_buf(rq, 200, &b);
	} else if (!strcmp(p, "batch_tokens/expire") && post) {
		emu_buf_init(&b, 0);
		emu_buf_printf(&b, "{\"expired\":%zu}", emu_batch_expire_all(&e->batch));
		emu_reply_json_buf(rq, 200, &b);
	} else if (!strcmp(p, "health") || !strcmp(p, "stats") || !strcmp(p, "stats/reset") ||
		   !strcmp(p, "seed") || !strcmp(p, "faults") || !strcmp(p, "ratelimit") ||
		   !strcmp(p, "drafts") || !strcmp(p, "drafts/expire")) {
		admin_error(rq, 405, "method not allowed");
	} else {
		admin_error(rq, 404, "unknown admin endpoint");
	}
}

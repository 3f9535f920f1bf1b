/*
 * emu_deliver.c - the delivery side of the emulator (imagedelivery.net): variants[] URLs,
 * GET <path>/<account hash>/<image id>/<variant>, signed-URL checks, counters and a log.
 *
 * Base. --delivery-url BASE sets what variants[] URLs start with; its path part (default
 * "/cdn", with the request's own origin in front) is where this emulator answers delivery
 * requests. The image id is everything between the hash and the last segment, decoded, so a
 * custom id "a/b" is delivered at .../<hash>/a/b/<variant> as Cloudflare shows it.
 *
 * Tokens (reference §5, §9.2). A private image (requireSignedURLs) is served through a
 * variant without neverRequireSignedURLs only with "?exp=<s>&sig=<hex>": sig must be the
 * last parameter, exp in the future, and sig the HMAC-SHA256, keyed with one of the
 * account's current signing keys, of "<request path>?<query before &sig>" (the URL's
 * pathname, base path included). A deleted key therefore stops its URLs at once.
 * Refusals: 403 (missing, malformed, wrong or expired token; code 9425 unconfirmed), 404
 * (unknown hash, image or variant), 405 (not GET/HEAD). Delivery is not an API call: no
 * auth, no rate limit, no faults, no --latency-ms, and it is counted apart from the ops.
 */
#include "emu.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIG_HEX 64

int emu_delivery_init(struct emu_delivery *d, const char *url)
{
	const char *p;

	pthread_mutex_init(&d->lock, NULL);
	if (!url) {
		d->path = strdup(EMU_DELIVERY_PATH);
		return d->path ? 0 : -ENOMEM;
	}
	p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	if (strlen(url) > EMU_MAX_DELIVERY_URL || !p || !p[1] || strchr(p, '?') ||
	    !strncmp(p, "/client/", 8) || !strncmp(p, "/__emulator/", 12) ||
	    !strncmp(p, "/upload/", 8)) {
		fprintf(stderr,
			"imagesfs-emulator: --delivery-url takes http(s)://HOST/PATH with a "
			"non-empty PATH outside /client, /upload and /__emulator\n");
		return -EINVAL;
	}
	d->base = strdup(url);
	d->path = strdup(p);
	if (!d->base || !d->path)
		return -ENOMEM;
	/* no trailing slash: URLs are base + "/" + hash + ... */
	while (strlen(d->base) > 1 && d->base[strlen(d->base) - 1] == '/')
		d->base[strlen(d->base) - 1] = '\0';
	while (strlen(d->path) > 1 && d->path[strlen(d->path) - 1] == '/')
		d->path[strlen(d->path) - 1] = '\0';
	return 0;
}

void emu_delivery_release(struct emu_delivery *d)
{
	size_t i;

	for (i = 0; i < EMU_DELIVERY_LOG; i++)
		free(d->log[i].uri);
	free(d->base);
	free(d->path);
	pthread_mutex_destroy(&d->lock);
}

bool emu_delivery_match(const struct emu_delivery *d, const char *path)
{
	size_t n = strlen(d->path);

	return !strncmp(path, d->path, n) && path[n] == '/';
}

void emu_delivery_stats_reset(struct emu_delivery *d)
{
	atomic_store_explicit(&d->requests, 0, memory_order_relaxed);
	atomic_store_explicit(&d->ok, 0, memory_order_relaxed);
	atomic_store_explicit(&d->denied, 0, memory_order_relaxed);
	atomic_store_explicit(&d->not_found, 0, memory_order_relaxed);
}

void emu_delivery_stats_json(struct emu_delivery *d, struct emu_buf *b)
{
	emu_buf_printf(b,
		       ",\"delivery\":{\"requests\":%lu,\"ok\":%lu,\"denied\":%lu,"
		       "\"not_found\":%lu}",
		       atomic_load_explicit(&d->requests, memory_order_relaxed),
		       atomic_load_explicit(&d->ok, memory_order_relaxed),
		       atomic_load_explicit(&d->denied, memory_order_relaxed),
		       atomic_load_explicit(&d->not_found, memory_order_relaxed));
}

void emu_delivery_log_json(struct emu_delivery *d, struct emu_buf *b)
{
	size_t i, start;

	emu_buf_puts(b, "{\"requests\":[");
	pthread_mutex_lock(&d->lock);
	start = (d->log_next + EMU_DELIVERY_LOG - d->log_n) % EMU_DELIVERY_LOG;
	for (i = 0; i < d->log_n; i++) {
		const struct emu_dlog_entry *en = &d->log[(start + i) % EMU_DELIVERY_LOG];

		emu_buf_puts(b, i ? ",{\"uri\":" : "{\"uri\":");
		emu_buf_json_str(b, en->uri, strlen(en->uri));
		emu_buf_printf(b, ",\"status\":%u,\"credentials\":%s}", en->status,
			       en->credentials ? "true" : "false");
	}
	pthread_mutex_unlock(&d->lock);
	emu_buf_puts(b, "]}");
}

static void log_request(struct emu_delivery *d, struct emu_req *rq, unsigned status)
{
	char *copy = strdup(rq->uri);

	if (!copy)
		return;
	pthread_mutex_lock(&d->lock);
	free(d->log[d->log_next].uri);
	d->log[d->log_next].uri = copy;
	d->log[d->log_next].status = status;
	/* delivery needs no credentials; a client that sends them leaks them to a CDN */
	d->log[d->log_next].credentials =
	    emu_req_header(rq, "Authorization") || emu_req_header(rq, "X-Auth-Key");
	d->log_next = (d->log_next + 1) % EMU_DELIVERY_LOG;
	if (d->log_n < EMU_DELIVERY_LOG)
		d->log_n++;
	pthread_mutex_unlock(&d->lock);
}

int emu_delivery_names(struct emu *e, struct emu_req *rq, struct emu_vnames *vn)
{
	struct emu_buf b;
	char *prefix;
	int rc;

	emu_buf_init(&b, EMU_MAX_DELIVERY_URL + 64);
	if (e->delivery.base) {
		emu_buf_puts(&b, e->delivery.base);
	} else {
		emu_self_origin(e, rq, &b);
		emu_buf_puts(&b, e->delivery.path);
	}
	emu_buf_printf(&b, "/%s/", e->account_hash);
	if (b.err) {
		emu_buf_release(&b);
		return b.err;
	}
	prefix = emu_buf_steal(&b, NULL);
	rc = emu_variants_names(&e->variants, prefix, vn);
	if (rc) {
		free(prefix);
		return rc;
	}
	vn->prefix_owned = prefix;
	return 0;
}

/* ---- the request ---- */

static void reply_text(struct emu_req *rq, unsigned status, const char *text)
{
	struct emu_reply *r = &rq->reply;

	r->status = status;
	r->ctype = "text/plain; charset=utf-8";
	r->body = strdup(text);
	r->len = r->body ? strlen(text) : 0;
	r->ready = r->body != NULL;
}

static bool hex_eq_ct(const char *a, const char *b, size_t n)
{
	unsigned char d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* True when the token of this request was made with one of the account's keys. */
static bool token_valid(struct emu *e, struct emu_req *rq)
{
	struct emu_key *snap;
	const char *q = strchr(rq->uri, '?'), *sigp, *exp;
	unsigned char mac[EVP_MAX_MD_SIZE];
	char hex[SIG_HEX + 1];
	unsigned int maclen;
	long expv;
	size_t n, i, k;
	bool ok = false;

	if (!q)
		return false;
	sigp = strstr(q, "&sig=");
	exp = emu_req_query(rq, "exp", NULL);
	if (!sigp || strlen(sigp + 5) != SIG_HEX || !exp ||
	    emu_parse_long(exp, 0, LONG_MAX, &expv) || expv <= emu_now_ms() / 1000)
		return false;
	snap = calloc(EMU_MAX_KEYS, sizeof(*snap));
	if (!snap)
		return false;
	n = emu_keys_snapshot(&e->keys, snap, EMU_MAX_KEYS);
	for (k = 0; k < n && !ok; k++) {
		if (!HMAC(EVP_sha256(), snap[k].value, (int)strlen(snap[k].value),
			  (const unsigned char *)rq->uri, (size_t)(sigp - rq->uri), mac, &maclen))
			continue;
		for (i = 0; i < maclen && i * 2 < SIG_HEX; i++)
			snprintf(hex + 2 * i, 3, "%02x", mac[i]);
		ok = maclen * 2 == SIG_HEX && hex_eq_ct(hex, sigp + 5, SIG_HEX);
	}
	free(snap);
	return ok;
}

/* Splits rest = "<hash>/<id...>/<variant>" (raw); false when it has fewer than 3 parts. */
static bool split_target(const char *rest, const char **id, size_t *idlen, const char **var)
{
	const char *first = strchr(rest, '/'), *last = strrchr(rest, '/');

	if (!first || first == rest || last == first || last == first + 1 || !last[1])
		return false;
	*id = first + 1;
	*idlen = (size_t)(last - first - 1);
	*var = last + 1;
	return true;
}

static unsigned deliver(struct emu *e, struct emu_req *rq)
{
	const char *rest = rq->path + strlen(e->delivery.path) + 1, *rid, *rvar;
	size_t ridlen, idlen = 0, vlen = 0, hlen = strlen(e->account_hash);
	char *id = NULL, *var = NULL;
	struct emu_variant v;
	struct emu_blob *blob = NULL;
	bool rsu = false;
	unsigned char *out = NULL;
	size_t outlen = 0;
	const char *ctype = NULL;
	unsigned status = 404;

	if (strcmp(rq->method, "GET") && strcmp(rq->method, "HEAD")) {
		reply_text(rq, 405, "ERROR 9405: method not allowed\n");
		return 405;
	}
	if (!split_target(rest, &rid, &ridlen, &rvar) || strncmp(rest, e->account_hash, hlen) ||
	    rest[hlen] != '/' || !(id = emu_pct_decode(rid, ridlen, false, &idlen)) ||
	    !(var = emu_pct_decode(rvar, strlen(rvar), false, &vlen)) ||
	    !emu_variants_find(&e->variants, var, vlen, &v) ||
	    !(blob = emu_store_get_delivery(&e->store, id, idlen, &rsu))) {
		reply_text(rq, 404, "ERROR 9404: image or variant not found\n");
		goto out;
	}
	if (rsu && !v.never_require_signed && !token_valid(e, rq)) {
		status = 403;
		reply_text(rq, 403, "ERROR 9425: image access denied (signed URL required)\n");
		goto out;
	}
	if (emu_render(&v, blob->data, blob->len, &out, &outlen, &ctype)) {
		status = 415;
		reply_text(rq, 415, "ERROR 9520: the image cannot be decoded\n");
		goto out;
	}
	status = 200;
	rq->reply.status = 200;
	rq->reply.ctype = ctype;
	rq->reply.body = (char *)out;
	rq->reply.len = outlen;
	rq->reply.ready = true;
	emu_reply_add_header(&rq->reply, "Cache-Control",
			     rsu && !v.never_require_signed ? "private, max-age=3600"
							    : "public, max-age=14400");
out:
	if (blob)
		emu_blob_unref(blob);
	free(id);
	free(var);
	return status;
}

void emu_h_delivery(struct emu *e, struct emu_req *rq)
{
	unsigned status = deliver(e, rq);

	atomic_fetch_add_explicit(&e->delivery.requests, 1, memory_order_relaxed);
	if (status == 200)
		atomic_fetch_add_explicit(&e->delivery.ok, 1, memory_order_relaxed);
	else if (status == 403)
		atomic_fetch_add_explicit(&e->delivery.denied, 1, memory_order_relaxed);
	else if (status == 404)
		atomic_fetch_add_explicit(&e->delivery.not_found, 1, memory_order_relaxed);
	log_request(&e->delivery, rq, status);
}

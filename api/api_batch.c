/*
 * api_batch.c - the pool of Images batch API tokens and their limiters. No HTTP here: the
 * caller (api_http.c) fetches tokens and runs requests; this file decides which token a
 * request uses, when a new one must be fetched, and when the batch API is given up.
 *
 * A token is handed out until its renewal point (a fifth of its lifetime before expiresAt,
 * between API_BATCH_MARGIN_MIN_MS and API_BATCH_MARGIN_MAX_MS), so requests in flight do not
 * meet its expiry; it is freed (and its secret wiped) once expired or refused by the server.
 * One thread at a time fetches; while fewer than `want` tokens are usable the next caller
 * is asked to fetch one. Each token has its own token bucket (rate, burst), so the pool
 * sends at most n x (burst + rate) requests in any second. A permanent fetch failure
 * (refused, unknown endpoint, no permission) switches the pool to FALLBACK for good; a
 * transient one (network, 429, 5xx) pauses fetching for API_BATCH_REFETCH_MS.
 *
 * Lock: b->lock guards every mutable field below `lock` in struct api_batch; it is never
 * held across a sleep or a network call.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int api_batch_init(struct api_batch *b, const char *origin, size_t want, double rate, double burst)
{
	struct api_buf u = {0};
	size_t olen = strlen(origin);

	memset(b, 0, sizeof(*b));
	while (olen > 0 && origin[olen - 1] == '/')
		olen--;
	if (api_buf_add(&u, origin, olen) || api_buf_adds(&u, "/images")) {
		api_buf_release(&u);
		return -ENOMEM;
	}
	b->images_url = api_buf_steal(&u);
	b->want = want < 1 ? 1 : want > API_BATCH_MAX_TOKENS ? API_BATCH_MAX_TOKENS : want;
	b->rate = rate;
	b->burst = burst;
	b->state = API_BATCH_ON;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	return 0;
}

static void free_tok(struct api_btok *t)
{
	if (t->hdr) {
		explicit_bzero(t->hdr, strlen(t->hdr));
		free(t->hdr);
	}
	memset(t, 0, sizeof(*t));
}

void api_batch_release(struct api_batch *b)
{
	if (!b->images_url)
		return;
	for (size_t i = 0; i < API_BATCH_MAX_TOKENS; i++)
		free_tok(&b->tok[i]);
	free(b->images_url);
	b->images_url = NULL;
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
}

/* Frees expired tokens; returns how many are usable (before their renewal point). */
static size_t sweep_locked(struct api_batch *b, int64_t now_ns)
{
	size_t usable = 0;
	for (size_t i = 0; i < API_BATCH_MAX_TOKENS; i++) {
		struct api_btok *t = &b->tok[i];
		if (!t->hdr)
			continue;
		if (now_ns >= t->expires_ns)
			free_tok(t);
		else if (now_ns < t->renew_ns)
			usable++;
	}
	return usable;
}

/* The usable token whose limiter has the most room (ties: fewest requests in flight). */
static int best_locked(struct api_batch *b, int64_t now_ns)
{
	int best = -1;
	double best_room = 0;
	for (size_t i = 0; i < API_BATCH_MAX_TOKENS; i++) {
		struct api_btok *t = &b->tok[i];
		if (!t->hdr || now_ns >= t->renew_ns)
			continue;
		double room =
		    t->bucket.tokens + (double)(now_ns - t->bucket.last_ns) * t->bucket.rate / 1e9;
		if (room > t->bucket.burst)
			room = t->bucket.burst;
		room -= (double)t->inflight * 1e-3;
		if (best < 0 || room > best_room) {
			best = (int)i;
			best_room = room;
		}
	}
	return best;
}

enum api_batch_act api_batch_acquire(struct api_batch *b, int64_t now_ns, struct api_bpick *p)
{
	enum api_batch_act act;

	memset(p, 0, sizeof(*p));
	p->slot = -1;
	pthread_mutex_lock(&b->lock);
	size_t usable = sweep_locked(b, now_ns);
	int can_fetch = !b->fetching && now_ns >= b->refetch_ns;
	if (b->state != API_BATCH_ON || now_ns < b->down_until_ns) {
		act = API_BATCH_GLOBAL;
	} else if (usable < b->want && can_fetch) {
		b->fetching = 1;
		act = API_BATCH_FETCH;
	} else if (usable > 0) {
		int i = best_locked(b, now_ns);
		p->hdr = strdup(b->tok[i].hdr);
		if (p->hdr) {
			p->slot = i;
			p->gen = b->tok[i].gen;
			b->tok[i].inflight++;
			act = API_BATCH_USE;
		} else {
			act = API_BATCH_GLOBAL;
		}
	} else {
		act = b->fetching ? API_BATCH_WAIT : API_BATCH_GLOBAL;
	}
	pthread_mutex_unlock(&b->lock);
	return act;
}

void api_batch_wait(struct api_batch *b, long max_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += max_ms / 1000;
	ts.tv_nsec += (max_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&b->lock);
	while (b->fetching)
		if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&b->lock);
}

/* A free slot, or the one expiring first (its holders keep their own copies). */
static int slot_for_new_locked(struct api_batch *b)
{
	int pick = -1;
	for (size_t i = 0; i < API_BATCH_MAX_TOKENS; i++) {
		if (!b->tok[i].hdr)
			return (int)i;
		if (pick < 0 || b->tok[i].expires_ns < b->tok[pick].expires_ns)
			pick = (int)i;
	}
	return pick;
}

static int64_t margin_ns(int64_t lifetime_ms)
{
	int64_t m = lifetime_ms / 5;
	if (m < API_BATCH_MARGIN_MIN_MS)
		m = API_BATCH_MARGIN_MIN_MS;
	if (m > API_BATCH_MARGIN_MAX_MS)
		m = API_BATCH_MARGIN_MAX_MS;
	if (m > lifetime_ms / 2)
		m = lifetime_ms / 2;
	return m * 1000000;
}

int api_batch_fetch_done(struct api_batch *b, int64_t now_ns, enum api_batch_fetch result,
			 const char *token, int64_t lifetime_ms)
{
	int became_fallback = 0, rc = 0;
	char *hdr = NULL;
	struct api_buf hb = {0};

	if (result == API_BATCH_FETCH_OK) {
		if (api_buf_printf(&hb, "Authorization: Bearer %s", token) == 0)
			hdr = api_buf_steal(&hb);
		else
			rc = -ENOMEM;
		api_buf_release(&hb);
	}
	if (lifetime_ms < API_BATCH_MIN_LIFETIME_MS)
		lifetime_ms = API_BATCH_MIN_LIFETIME_MS;
	pthread_mutex_lock(&b->lock);
	b->fetching = 0;
	if (hdr) {
		int i = slot_for_new_locked(b);
		free_tok(&b->tok[i]);
		b->tok[i].hdr = hdr;
		b->tok[i].expires_ns = now_ns + lifetime_ms * 1000000;
		b->tok[i].renew_ns = b->tok[i].expires_ns - margin_ns(lifetime_ms);
		b->tok[i].gen = ++b->next_gen;
		api_bucket_init(&b->tok[i].bucket, b->rate, b->burst, now_ns);
		b->fetched++;
	} else if (result == API_BATCH_FETCH_PERMANENT && b->state == API_BATCH_ON) {
		b->state = API_BATCH_FALLBACK;
		became_fallback = 1;
	} else {
		b->refetch_ns = now_ns + (int64_t)API_BATCH_REFETCH_MS * 1000000;
	}
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	return rc ? rc : became_fallback;
}

int api_batch_done(struct api_batch *b, struct api_bpick *p, int refused)
{
	int gave_up = 0;
	if (p->slot < 0)
		return 0;
	pthread_mutex_lock(&b->lock);
	struct api_btok *t = &b->tok[p->slot];
	/* A host that refuses every fresh token (a batch_url that is not the batch host) would
	 * cost token requests on every call: give up after a run of tokens refused before any
	 * of their requests got through. A token that worked and then expired does not count. */
	if (t->hdr && t->gen == p->gen) {
		if (t->inflight > 0)
			t->inflight--;
		if (refused && !t->proven)
			b->refused_run++;
		if (refused)
			free_tok(t);
		else
			t->proven = 1;
	}
	if (!refused)
		b->refused_run = 0;
	if (b->refused_run >= API_BATCH_MAX_REFUSED && b->state == API_BATCH_ON) {
		b->state = API_BATCH_FALLBACK;
		gave_up = 1;
	}
	pthread_mutex_unlock(&b->lock);
	if (p->hdr) {
		explicit_bzero(p->hdr, strlen(p->hdr));
		free(p->hdr);
	}
	p->hdr = NULL;
	p->slot = -1;
	return gave_up;
}

void api_batch_host_down(struct api_batch *b, int64_t now_ns)
{
	pthread_mutex_lock(&b->lock);
	b->down_until_ns = now_ns + (int64_t)API_BATCH_REFETCH_MS * 1000000;
	pthread_mutex_unlock(&b->lock);
}

int api_batch_disable(struct api_batch *b)
{
	pthread_mutex_lock(&b->lock);
	int was_on = b->state == API_BATCH_ON;
	b->state = API_BATCH_FALLBACK;
	pthread_mutex_unlock(&b->lock);
	return was_on;
}

int64_t api_batch_throttle_ns(struct api_batch *b, const struct api_bpick *p, int64_t now_ns)
{
	int64_t wait = 0;
	pthread_mutex_lock(&b->lock);
	struct api_btok *t = &b->tok[p->slot];
	if (t->hdr && t->gen == p->gen)
		wait = api_bucket_take(&t->bucket, now_ns);
	pthread_mutex_unlock(&b->lock);
	return wait;
}

void api_batch_snapshot_of(struct api_batch *b, int64_t now_ns, struct api_batch_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	if (!b->images_url)
		return;
	pthread_mutex_lock(&b->lock);
	out->state = b->state;
	for (size_t i = 0; i < API_BATCH_MAX_TOKENS; i++)
		if (b->tok[i].hdr && now_ns < b->tok[i].expires_ns)
			out->tokens_live++;
	out->tokens_fetched = b->fetched;
	pthread_mutex_unlock(&b->lock);
}

/* Paths (after .../images) the batch host serves, with their methods: POST /v1,
 * GET|PATCH|DELETE /v1/{id}, GET /v2[?query], POST /v2/direct_upload. Ids are escaped, so
 * an id is one segment; route names the API owns under /v1/ are not ids. */
int api_batch_covered(const char *method, const char *suffix)
{
	static const char *const reserved[] = {"keys",	 "stats",	"variants",
					       "config", "batch_token", "direct_upload"};
	int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;

	if (strcmp(suffix, "/v1") == 0)
		return post;
	if (strcmp(suffix, "/v2") == 0 || strncmp(suffix, "/v2?", 4) == 0)
		return get;
	if (strcmp(suffix, "/v2/direct_upload") == 0)
		return post;
	if (strncmp(suffix, "/v1/", 4) != 0 || !suffix[4] || strpbrk(suffix + 4, "/?"))
		return 0;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(suffix + 4, reserved[i]) == 0)
			return 0;
	return get || strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0;
}

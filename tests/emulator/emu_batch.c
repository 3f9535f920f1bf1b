/*
 * emu_batch.c - the Images batch API: batch tokens and their per-token rate limit.
 *
 * GET /client/v4/accounts/{id}/images/v1/batch_token (an ordinary API call: API-token auth,
 * counted by --rate-limit) mints a random token valid for --batch-token-ttl seconds and
 * answers {"token":..,"expiresAt":RFC 3339}. The batch routes at the server root
 * (/images/v1, /images/v1/{id}, /images/v2, /images/v2/direct_upload, as on
 * batch.imagedelivery.net) accept only a live batch token and are not charged to
 * --rate-limit; each token may make --batch-rate requests per second (a fixed one-second
 * window per token), beyond that 429/971 with Retry-After: 1.
 * Tokens live in memory only (they do not survive a restart); expired ones are swept when
 * the table is full.
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int emu_batch_init(struct emu_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->ttl_s = EMU_BATCH_DEFAULT_TTL_S;
	b->rate = EMU_BATCH_DEFAULT_RATE;
	return pthread_mutex_init(&b->lock, NULL) ? -ENOMEM : 0;
}

void emu_batch_release(struct emu_batch *b)
{
	explicit_bzero(b->toks, sizeof(b->toks));
	pthread_mutex_destroy(&b->lock);
}

/* A free slot, sweeping expired tokens when none is free; -1 when the table is full. */
static int free_slot_locked(struct emu_batch *b, int64_t now)
{
	size_t i;

	for (i = 0; i < EMU_BATCH_MAX_TOKENS; i++) {
		if (!b->toks[i].value[0])
			return (int)i;
	}
	for (i = 0; i < EMU_BATCH_MAX_TOKENS; i++) {
		if (b->toks[i].expires_mono <= now) {
			memset(&b->toks[i], 0, sizeof(b->toks[i]));
			return (int)i;
		}
	}
	return -1;
}

void emu_h_batch_token(struct emu *e, struct emu_req *rq)
{
	struct emu_batch *b = &e->batch;
	unsigned char raw[24];
	char tok[EMU_BATCH_TOKEN_LEN], when[64];
	struct emu_buf out;
	int64_t now = mono_ms();
	int slot;

	if (b->refuse) {
		emu_reply_error(rq, 403, 9109, "Unauthorized to access requested resource");
		return;
	}
	emu_random_bytes(raw, sizeof(raw));
	memcpy(tok, "bt_", 3);
	emu_base64url(raw, sizeof(raw), tok + 3);
	pthread_mutex_lock(&b->lock);
	slot = free_slot_locked(b, now);
	if (slot >= 0) {
		snprintf(b->toks[slot].value, sizeof(b->toks[slot].value), "%s", tok);
		b->toks[slot].expires_mono = now + b->ttl_s * 1000;
		b->toks[slot].win_start = 0;
		b->toks[slot].win_used = 0;
		b->issued++;
	}
	pthread_mutex_unlock(&b->lock);
	if (slot < 0) {
		emu_reply_error(rq, 429, 971, "Too many batch tokens; wait for some to expire");
		return;
	}
	emu_format_time(emu_now_ms() + b->ttl_s * 1000, when);
	emu_buf_init(&out, 0);
	emu_reply_result_begin(&out);
	emu_buf_printf(&out, "{\"token\":\"%s\",\"expiresAt\":\"%s\"}", tok, when);
	emu_reply_result_end(rq, &out);
	explicit_bzero(tok, sizeof(tok));
}

/* Finds the token; charges one request to its window. */
static enum emu_batch_auth charge_locked(struct emu_batch *b, const char *tok, int64_t now)
{
	size_t i;

	for (i = 0; i < EMU_BATCH_MAX_TOKENS; i++) {
		struct emu_btoken *t = &b->toks[i];

		if (!t->value[0] || strcmp(t->value, tok) != 0)
			continue;
		if (t->expires_mono <= now)
			return EMU_BATCH_EXPIRED;
		if (!t->win_start || now >= t->win_start + 1000) {
			t->win_start = now;
			t->win_used = 0;
		}
		if (b->rate > 0 && t->win_used >= b->rate)
			return EMU_BATCH_LIMITED;
		t->win_used++;
		return EMU_BATCH_OK;
	}
	return EMU_BATCH_UNKNOWN;
}

bool emu_batch_check(struct emu *e, struct emu_req *rq)
{
	const char *authz = emu_req_header(rq, "Authorization");
	enum emu_batch_auth a = EMU_BATCH_UNKNOWN;

	if (authz && strncasecmp(authz, "Bearer ", 7) == 0 &&
	    strlen(authz + 7) < EMU_BATCH_TOKEN_LEN) {
		pthread_mutex_lock(&e->batch.lock);
		a = charge_locked(&e->batch, authz + 7, mono_ms());
		pthread_mutex_unlock(&e->batch.lock);
	}
	switch (a) {
	case EMU_BATCH_OK:
		return false;
	case EMU_BATCH_EXPIRED:
		atomic_fetch_add_explicit(&e->batch.refused, 1, memory_order_relaxed);
		emu_reply_error(rq, 401, 10000, "Authentication error: batch token expired");
		return true;
	case EMU_BATCH_LIMITED:
		emu_reply_add_header(&rq->reply, "Retry-After", "1");
		emu_reply_error(rq, 429, 971,
				"Please wait and consider throttling your request speed");
		return true;
	case EMU_BATCH_UNKNOWN:
	default:
		atomic_fetch_add_explicit(&e->batch.refused, 1, memory_order_relaxed);
		emu_reply_error(rq, 401, 10000, "Authentication error");
		return true;
	}
}

/* The ops the batch host serves; anything else at the root is unknown (404/7003). */
bool emu_batch_op_covered(const struct emu_req *rq)
{
	switch (rq->op) {
	case EMU_OP_UPLOAD:
	case EMU_OP_GET:
	case EMU_OP_EDIT:
	case EMU_OP_DELETE:
	case EMU_OP_LIST_V2:
		return true;
	case EMU_OP_DIRECT_UPLOAD:
		return rq->v2;
	default:
		return false;
	}
}

/* The tokens live now; with expire, they expire now too. */
static size_t live_tokens(struct emu_batch *b, bool expire)
{
	int64_t now = mono_ms();
	size_t i, n = 0;

	pthread_mutex_lock(&b->lock);
	for (i = 0; i < EMU_BATCH_MAX_TOKENS; i++) {
		if (b->toks[i].value[0] && b->toks[i].expires_mono > now) {
			if (expire)
				b->toks[i].expires_mono = now;
			n++;
		}
	}
	pthread_mutex_unlock(&b->lock);
	return n;
}

size_t emu_batch_live(struct emu_batch *b)
{
	return live_tokens(b, false);
}

size_t emu_batch_expire_all(struct emu_batch *b)
{
	return live_tokens(b, true);
}

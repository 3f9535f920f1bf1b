/*
 * emu_faults.c - fault injection rules and the request rate limit.
 *
 * Rules are checked in the order they were added; the first rule whose op matches, which
 * still has hits left and whose ratio roll (deterministic xorshift when "seed" is given)
 * succeeds, fires once. Modes:
 *   status    reply with an error status instead of running the op (or after running it
 *             when "after":true: the op took effect but the client sees the error);
 *             429 carries Retry-After + x-ratelimit-* and code 971
 *   stall     run the op, hold the reply for stall_ms (the connection is suspended)
 *   close     drop the connection without a reply (before the op, or after it: "after")
 *   truncate  run the op, send the headers with the full Content-Length but only half of
 *             the body, then close the connection
 * The rate limit is a fixed window: the first request opens a window of window_s seconds,
 * at most `limit` requests pass in it, the rest get 429/971 until the window ends.
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAULT_MAX_RULES 64
#define FAULT_MAX_STALL_MS 600000L

int emu_faults_init(struct emu_faults *f)
{
	memset(f, 0, sizeof(*f));
	return pthread_mutex_init(&f->lock, NULL) ? -ENOMEM : 0;
}

void emu_faults_release(struct emu_faults *f)
{
	free(f->rules);
	f->rules = NULL;
	f->n = 0;
	pthread_mutex_destroy(&f->lock);
}

static const char *const mode_names[] = {"none", "status", "stall", "close", "truncate"};

static int parse_mode(const char *s)
{
	int i;

	for (i = 1; i < 5; i++) {
		if (!strcmp(s, mode_names[i]))
			return i;
	}
	return -1;
}

/* Reads an optional integer member; false when present but not an integer in range. */
static bool get_long(struct json_object *o, const char *k, long min, long max, long *out)
{
	struct json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, k, &v))
		return true;
	if (!json_object_is_type(v, json_type_int))
		return false;
	x = json_object_get_int64(v);
	if (x < min || x > max)
		return false;
	*out = (long)x;
	return true;
}

static const char *parse_rule(struct json_object *o, struct emu_fault_rule *r)
{
	struct json_object *v;
	long seed = 0;

	memset(r, 0, sizeof(*r));
	r->op = -1;
	r->mode = EMU_FAULT_STATUS;
	r->status = 503;
	r->count = -1;
	r->stall_ms = 5000;
	r->retry_after = 1;
	if (json_object_object_get_ex(o, "op", &v)) {
		const char *s = json_object_get_string(v);

		if (!json_object_is_type(v, json_type_string))
			return "op must be a string";
		if (strcmp(s, "*") && (r->op = emu_op_from_name(s)) < 0)
			return "unknown op (use an /__emulator/stats op name or \"*\")";
	}
	if (json_object_object_get_ex(o, "mode", &v)) {
		int m = json_object_is_type(v, json_type_string)
			    ? parse_mode(json_object_get_string(v))
			    : -1;

		if (m < 0)
			return "mode must be status, stall, close or truncate";
		r->mode = (enum emu_fault_mode)m;
	}
	{
		long st = r->status;

		if (!get_long(o, "status", 400, 599, &st))
			return "status must be an integer between 400 and 599";
		r->status = (unsigned)st;
	}
	if (!get_long(o, "count", 1, 1000000000L, &r->count))
		return "count must be a positive integer";
	if (!get_long(o, "stall_ms", 0, FAULT_MAX_STALL_MS, &r->stall_ms))
		return "stall_ms must be an integer between 0 and 600000";
	if (!get_long(o, "retry_after", 0, 86400, &r->retry_after))
		return "retry_after must be an integer between 0 and 86400";
	if (!get_long(o, "seed", 0, INT32_MAX, &seed))
		return "seed must be a non-negative integer";
	if (json_object_object_get_ex(o, "ratio", &v)) {
		if (!json_object_is_type(v, json_type_double) &&
		    !json_object_is_type(v, json_type_int))
			return "ratio must be a number in (0, 1]";
		r->ratio = json_object_get_double(v);
		if (!(r->ratio > 0 && r->ratio <= 1))
			return "ratio must be a number in (0, 1]";
	}
	if (json_object_object_get_ex(o, "after", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return "after must be a boolean";
		r->after = json_object_get_boolean(v);
	}
	if (seed)
		r->rng = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
	else
		emu_random_bytes(&r->rng, sizeof(r->rng));
	if (!r->rng)
		r->rng = 1;
	return NULL;
}

int emu_faults_add_json(struct emu_faults *f, struct json_object *o, char *err, size_t errsz)
{
	struct emu_fault_rule r[FAULT_MAX_RULES], *nr;
	bool arr = json_object_is_type(o, json_type_array);
	size_t n = arr ? json_object_array_length(o) : 1, i;
	const char *why = NULL;

	if (n > FAULT_MAX_RULES) {
		snprintf(err, errsz, "too many fault rules (max %d)", FAULT_MAX_RULES);
		return -ENOSPC;
	}
	/* all rules are parsed before any is added: a bad array adds nothing */
	for (i = 0; i < n && !why; i++) {
		struct json_object *ro = arr ? json_object_array_get_idx(o, i) : o;

		if (!json_object_is_type(ro, json_type_object))
			why = "a fault rule must be a JSON object";
		else
			why = parse_rule(ro, &r[i]);
	}
	if (why) {
		snprintf(err, errsz, "%s", why);
		return -EINVAL;
	}
	pthread_mutex_lock(&f->lock);
	if (f->n + n > FAULT_MAX_RULES) {
		pthread_mutex_unlock(&f->lock);
		snprintf(err, errsz, "too many fault rules (max %d)", FAULT_MAX_RULES);
		return -ENOSPC;
	}
	nr = realloc(f->rules, (f->n + n + 1) * sizeof(*nr));
	if (!nr) {
		pthread_mutex_unlock(&f->lock);
		snprintf(err, errsz, "out of memory");
		return -ENOMEM;
	}
	f->rules = nr;
	memcpy(f->rules + f->n, r, n * sizeof(*r));
	f->n += n;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int emu_faults_add_spec(struct emu_faults *f, const char *spec, char *err, size_t errsz)
{
	struct json_object *o = emu_json_parse(spec, strlen(spec));
	int rc;

	if (!o) {
		snprintf(err, errsz,
			 "--fault takes a JSON object, e.g. "
			 "'{\"op\":\"images.upload\",\"status\":503,\"count\":1}'");
		return -EINVAL;
	}
	rc = emu_faults_add_json(f, o, err, errsz);
	json_object_put(o);
	return rc;
}

void emu_faults_clear(struct emu_faults *f)
{
	pthread_mutex_lock(&f->lock);
	free(f->rules);
	f->rules = NULL;
	f->n = 0;
	pthread_mutex_unlock(&f->lock);
}

void emu_faults_to_json(struct emu_faults *f, struct emu_buf *b)
{
	size_t i;

	pthread_mutex_lock(&f->lock);
	emu_buf_puts(b, "{\"rules\":[");
	for (i = 0; i < f->n; i++) {
		const struct emu_fault_rule *r = &f->rules[i];

		emu_buf_printf(b,
			       "%s{\"op\":\"%s\",\"mode\":\"%s\",\"status\":%u,\"count\":%ld,"
			       "\"ratio\":%g,\"stall_ms\":%ld,\"retry_after\":%ld,\"after\":%s,"
			       "\"hits\":%ld}",
			       i ? "," : "", r->op < 0 ? "*" : emu_op_names[r->op],
			       mode_names[r->mode], r->status, r->count, r->ratio ? r->ratio : 1.0,
			       r->stall_ms, r->retry_after, r->after ? "true" : "false", r->hits);
	}
	emu_buf_printf(b, "],\"rate_limit\":{\"limit\":%ld,\"window\":%ld,\"used\":%ld}}",
		       f->rl_limit, f->rl_window_s, f->rl_used);
	pthread_mutex_unlock(&f->lock);
}

static double next_unit(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return (double)(x >> 11) / 9007199254740992.0;
}

bool emu_faults_match(struct emu_faults *f, enum emu_op op, struct emu_fault_hit *hit)
{
	size_t i;
	bool fired = false;

	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->n && !fired; i++) {
		struct emu_fault_rule *r = &f->rules[i];

		if (r->op >= 0 && r->op != (int)op)
			continue;
		if (r->ratio > 0 && next_unit(&r->rng) >= r->ratio)
			continue;
		hit->mode = r->mode;
		hit->status = r->status;
		hit->stall_ms = r->stall_ms;
		hit->retry_after = r->retry_after;
		hit->after = r->after;
		r->hits++;
		fired = true;
		if (r->count > 0 && --r->count == 0) {
			memmove(r, r + 1, (f->n - i - 1) * sizeof(*r));
			f->n--;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return fired;
}

int emu_faults_parse_rate(const char *spec, long *limit, long *window_s)
{
	const char *slash = strchr(spec, '/');
	char num[32];
	size_t n;

	if (!slash || (n = (size_t)(slash - spec)) == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, spec, n);
	num[n] = '\0';
	if (emu_parse_long(num, 0, 1000000000L, limit) ||
	    emu_parse_long(slash + 1, 1, 86400L * 365, window_s))
		return -EINVAL;
	return 0;
}

int emu_faults_set_rate(struct emu_faults *f, long limit, long window_s)
{
	if (limit < 0 || window_s < 1)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	f->rl_limit = limit;
	f->rl_window_s = window_s;
	f->rl_window_start = 0;
	f->rl_used = 0;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rate_headers(struct emu_reply *r, long limit, long remaining, int64_t reset_in_ms)
{
	char v[64];
	time_t at = (time_t)((emu_now_ms() + reset_in_ms + 999) / 1000);
	struct tm tm;

	snprintf(v, sizeof(v), "%ld", limit);
	emu_reply_add_header(r, "x-ratelimit-limit", v);
	snprintf(v, sizeof(v), "%ld", remaining);
	emu_reply_add_header(r, "x-ratelimit-remaining", v);
	gmtime_r(&at, &tm);
	strftime(v, sizeof(v), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	emu_reply_add_header(r, "x-ratelimit-reset", v);
}

bool emu_faults_rate_charge(struct emu_faults *f, struct emu_reply *r, long *retry_after)
{
	int64_t now, end;
	long limit, remaining;
	bool ok;

	pthread_mutex_lock(&f->lock);
	if (f->rl_limit <= 0) {
		pthread_mutex_unlock(&f->lock);
		return true;
	}
	now = mono_ms();
	if (!f->rl_window_start || now >= f->rl_window_start + f->rl_window_s * 1000) {
		f->rl_window_start = now;
		f->rl_used = 0;
	}
	ok = f->rl_used < f->rl_limit;
	if (ok)
		f->rl_used++;
	limit = f->rl_limit;
	remaining = f->rl_limit - f->rl_used;
	end = f->rl_window_start + f->rl_window_s * 1000;
	pthread_mutex_unlock(&f->lock);
	*retry_after = (long)((end - now + 999) / 1000);
	rate_headers(r, limit, remaining, end - now);
	return ok;
}

void emu_faults_apply(struct emu_req *rq, const struct emu_fault_hit *hit)
{
	char ra[24];

	switch (hit->mode) {
	case EMU_FAULT_STALL:
		rq->reply.delay_ms += hit->stall_ms;
		break;
	case EMU_FAULT_CLOSE:
	case EMU_FAULT_TRUNCATE:
		if (!rq->reply.ready)
			emu_reply_error(rq, 500, 5500, "Internal Server Error");
		rq->reply.delivery = hit->mode;
		break;
	case EMU_FAULT_STATUS:
	case EMU_FAULT_NONE:
		snprintf(ra, sizeof(ra), "%ld", hit->retry_after);
		if (hit->status == 429) {
			emu_reply_add_header(&rq->reply, "Retry-After", ra);
			rate_headers(&rq->reply, 1200, 0, hit->retry_after * 1000);
			emu_reply_error(rq, 429, 971,
					"Please wait and consider throttling your request speed");
		} else if (hit->status >= 500) {
			if (hit->status == 503)
				emu_reply_add_header(&rq->reply, "Retry-After", ra);
			emu_reply_error(rq, hit->status, hit->status == 503 ? 5503 : 5500,
					hit->status == 503 ? "Server Unavailable"
							   : "Internal Server Error");
		} else {
			emu_reply_errorf(rq, hit->status, (int)(5000 + hit->status),
					 "Injected fault (HTTP %u)", hit->status);
		}
		break;
	}
}

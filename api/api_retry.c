/*
 * api_retry.c - when to try a request again, how long to wait, and the client-side rate
 * limiter. Pure functions of their inputs (plus a thread-local PRNG) so the policy is
 * unit-tested without a network.
 *
 * Policy:
 *   - Idempotent requests (GET, DELETE, PUT key, PATCH) are repeated after transport
 *     failures and after HTTP 429, 500, 502, 503, 504.
 *   - A POST that names its resource (upload with a custom id, variant create) is repeated
 *     the same way: if an earlier attempt did land, the retry gets "already exists" and
 *     the caller recognises its own object (api_image_write.c, api_misc.c).
 *   - A POST without an id (server-generated image id) is repeated only when it surely was
 *     not processed: the connection never opened, or the server answered 429 (the rate
 *     limiter refuses before doing anything). Otherwise a retry could store a duplicate.
 *   - Waits use "full jitter" (uniform in [0, min(cap, base * 2^(n-1))]) so that many
 *     threads hitting one outage do not retry in lockstep; a Retry-After from the server
 *     is a floor. The caller stops when max_attempts or the retry budget would be passed.
 *
 * Rate limiter: a token bucket (rate tokens/s, burst capacity) in front of every attempt.
 * A caller takes a token even when none is left (tokens go negative) and sleeps until its
 * reservation matures, so waiting threads are served in order and the bucket is never
 * held locked during a sleep.
 */
#include "api_internal.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int api_retry_curl_transient(int curl_code)
{
	switch (curl_code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_SEND_FAIL_REWIND: /* a reused connection died mid-upload (api_http.c) */
		return 1;
	default:
		return 0;
	}
}

int api_retry_not_sent(int curl_code)
{
	return curl_code == CURLE_COULDNT_RESOLVE_HOST || curl_code == CURLE_COULDNT_CONNECT;
}

int api_retry_status(long status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

int api_retry_should(enum api_idem idem, int curl_code, long status)
{
	switch (idem) {
	case API_IDEMPOTENT:
	case API_CREATE_WITH_ID:
		return curl_code ? api_retry_curl_transient(curl_code) : api_retry_status(status);
	case API_CREATE_ANON:
		return curl_code ? api_retry_not_sent(curl_code) : status == 429;
	}
	return 0;
}

int api_retry_outcome_unknown(int curl_code, long status)
{
	if (curl_code)
		return api_retry_curl_transient(curl_code) && !api_retry_not_sent(curl_code);
	/* A 5xx may come from a proxy after the origin acted; 429 is refused up front. */
	return status >= 500 && status <= 599;
}

long api_retry_delay_ms(int retry, long retry_after_ms, uint64_t rnd)
{
	long ceiling = API_BACKOFF_BASE_MS;
	for (int i = 1; i < retry && ceiling < API_BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > API_BACKOFF_CAP_MS)
		ceiling = API_BACKOFF_CAP_MS;
	long d = (long)(rnd % (uint64_t)(ceiling + 1));
	return retry_after_ms > d ? retry_after_ms : d;
}

uint64_t api_retry_rand(void)
{
	static __thread uint64_t s;
	if (!s) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
			s = 0;
		s ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)gettid();
		if (!s)
			s = 0x2545F4914F6CDD1Dull;
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

void api_bucket_init(struct api_bucket *b, double rate, double burst, int64_t now_ns)
{
	b->enabled = rate > 0;
	b->rate = rate;
	b->burst = burst < 1 ? 1 : burst;
	b->tokens = b->burst;
	b->last_ns = now_ns;
}

int64_t api_bucket_take(struct api_bucket *b, int64_t now_ns)
{
	if (!b->enabled)
		return 0;
	if (now_ns > b->last_ns) {
		b->tokens += (double)(now_ns - b->last_ns) * b->rate / 1e9;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last_ns = now_ns;
	}
	b->tokens -= 1;
	if (b->tokens >= 0)
		return 0;
	return (int64_t)(-b->tokens / b->rate * 1e9);
}

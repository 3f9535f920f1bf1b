/*
 * test_api_batch.c - unit tests of the batch token pool (api_batch.c) without a server:
 * which calls are routed, when a fetch is asked for, renewal before expiry, refused tokens,
 * permanent and transient fetch failures, per-token limiters and the snapshot.
 */
#include "api_internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000LL
#define SEC (1000 * MS)

static struct api_batch b;

static void setup(void)
{
	ck_assert_int_eq(api_batch_init(&b, "https://batch.example/", 2, 10.0, 2.0), 0);
}

static void teardown(void)
{
	api_batch_release(&b);
}

/* Runs acquire; for FETCH hands in a token "tN" with the given lifetime. */
static enum api_batch_act acq(int64_t now, struct api_bpick *p)
{
	return api_batch_acquire(&b, now, p);
}

static void fetch_ok(int64_t now, const char *tok, int64_t life_ms)
{
	struct api_bpick p;
	ck_assert_int_eq(acq(now, &p), API_BATCH_FETCH);
	ck_assert_int_eq(api_batch_fetch_done(&b, now, API_BATCH_FETCH_OK, tok, life_ms), 0);
}

START_TEST(test_covered)
{
	ck_assert(api_batch_covered("POST", "/v1"));
	ck_assert(api_batch_covered("GET", "/v1/abc"));
	ck_assert(api_batch_covered("PATCH", "/v1/a%2Fb"));
	ck_assert(api_batch_covered("DELETE", "/v1/a%2Fb"));
	ck_assert(api_batch_covered("GET", "/v2"));
	ck_assert(api_batch_covered("GET", "/v2?per_page=10000&continuation_token=x"));
	ck_assert(api_batch_covered("POST", "/v2/direct_upload"));
	ck_assert(!api_batch_covered("GET", "/v1"));	    /* v1 list: not covered */
	ck_assert(!api_batch_covered("GET", "/v1?page=1")); /* v1 list */
	ck_assert(!api_batch_covered("GET", "/v1/abc/blob"));
	ck_assert(!api_batch_covered("GET", "/v1/keys"));
	ck_assert(!api_batch_covered("PUT", "/v1/keys/k"));
	ck_assert(!api_batch_covered("GET", "/v1/stats"));
	ck_assert(!api_batch_covered("GET", "/v1/variants"));
	ck_assert(!api_batch_covered("GET", "/v1/variants/public"));
	ck_assert(!api_batch_covered("GET", "/v1/batch_token"));
	ck_assert(!api_batch_covered("PATCH", "/v1/config"));
	ck_assert(!api_batch_covered("POST", "/v1/direct_upload"));
	ck_assert(!api_batch_covered("POST", "/v1/abc"));
	ck_assert(!api_batch_covered("PUT", "/v1/abc"));
	ck_assert(!api_batch_covered("GET", "/v1/"));
}
END_TEST

START_TEST(test_url_and_first_fetch)
{
	struct api_bpick p;
	ck_assert_str_eq(b.images_url, "https://batch.example/images");
	/* no token: the first caller fetches, the others wait for it */
	ck_assert_int_eq(acq(0, &p), API_BATCH_FETCH);
	ck_assert_int_eq(acq(0, &p), API_BATCH_WAIT);
	ck_assert_int_eq(api_batch_fetch_done(&b, 0, API_BATCH_FETCH_OK, "t1", 100000), 0);
	/* one usable of two wanted: the next caller fetches the second */
	ck_assert_int_eq(acq(0, &p), API_BATCH_FETCH);
	ck_assert_int_eq(acq(0, &p), API_BATCH_USE); /* meanwhile others use t1 */
	ck_assert_str_eq(p.hdr, "Authorization: Bearer t1");
	api_batch_done(&b, &p, 0);
	ck_assert_ptr_null(p.hdr);
	ck_assert_int_eq(api_batch_fetch_done(&b, 0, API_BATCH_FETCH_OK, "t2", 100000), 0);
	struct api_batch_snapshot s;
	api_batch_snapshot_of(&b, 0, &s);
	ck_assert_int_eq(s.state, API_BATCH_ON);
	ck_assert_uint_eq(s.tokens_live, 2);
	ck_assert_uint_eq(s.tokens_fetched, 2);
}
END_TEST

START_TEST(test_renew_before_expiry)
{
	struct api_bpick p;
	fetch_ok(0, "t1", 10000); /* 10 s: handed out until 8 s (a fifth before expiry) */
	fetch_ok(0, "t2", 60000);
	ck_assert_int_eq(acq(7 * SEC, &p), API_BATCH_USE);
	api_batch_done(&b, &p, 0);
	/* at 8 s t1 is past its renewal point: a replacement is fetched, t2 serves meanwhile */
	ck_assert_int_eq(acq(8 * SEC, &p), API_BATCH_FETCH);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(acq(8 * SEC, &p), API_BATCH_USE);
		ck_assert_str_eq(p.hdr, "Authorization: Bearer t2");
		api_batch_done(&b, &p, 0);
	}
	ck_assert_int_eq(api_batch_fetch_done(&b, 8 * SEC, API_BATCH_FETCH_OK, "t3", 10000), 0);
	/* t1 still counts as live (a request may hold it) until it expires at 10 s */
	struct api_batch_snapshot s;
	api_batch_snapshot_of(&b, 9 * SEC, &s);
	ck_assert_uint_eq(s.tokens_live, 3);
	api_batch_snapshot_of(&b, 10 * SEC, &s);
	ck_assert_uint_eq(s.tokens_live, 2);
	/* a short lifetime still gets a margin and is not used past half its life */
	api_batch_release(&b);
	setup();
	fetch_ok(0, "s", 1000);
	ck_assert_int_eq(acq(400 * MS, &p), API_BATCH_FETCH); /* second token */
	ck_assert_int_eq(acq(400 * MS, &p), API_BATCH_USE);
	api_batch_done(&b, &p, 0);
	ck_assert_int_eq(acq(500 * MS, &p), API_BATCH_WAIT); /* s past renewal, fetch pending */
}
END_TEST

START_TEST(test_refused_token_dropped)
{
	struct api_bpick p, q;
	fetch_ok(0, "t1", 100000);
	fetch_ok(0, "t2", 100000);
	ck_assert_int_eq(acq(0, &p), API_BATCH_USE);
	ck_assert_int_eq(acq(0, &q), API_BATCH_USE);
	ck_assert_str_ne(p.hdr, q.hdr); /* spread over both tokens */
	char dropped[64];
	snprintf(dropped, sizeof(dropped), "%s", p.hdr);
	api_batch_done(&b, &p, 1); /* refused by the server */
	api_batch_done(&b, &q, 0);
	/* one usable token left: the next caller fetches a replacement */
	ck_assert_int_eq(acq(0, &p), API_BATCH_FETCH);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(acq(0, &p), API_BATCH_USE);
		ck_assert_str_ne(p.hdr, dropped);
		api_batch_done(&b, &p, 0);
	}
}
END_TEST

START_TEST(test_permanent_failure_falls_back_once)
{
	struct api_bpick p;
	ck_assert_int_eq(acq(0, &p), API_BATCH_FETCH);
	ck_assert_int_eq(api_batch_fetch_done(&b, 0, API_BATCH_FETCH_PERMANENT, NULL, 0), 1);
	ck_assert_int_eq(acq(0, &p), API_BATCH_GLOBAL);
	ck_assert_int_eq(acq(100 * SEC, &p), API_BATCH_GLOBAL);
	struct api_batch_snapshot s;
	api_batch_snapshot_of(&b, 0, &s);
	ck_assert_int_eq(s.state, API_BATCH_FALLBACK);
	/* a second report does not ask for a second log line */
	ck_assert_int_eq(api_batch_fetch_done(&b, 0, API_BATCH_FETCH_PERMANENT, NULL, 0), 0);
}
END_TEST

START_TEST(test_transient_failure_pauses)
{
	struct api_bpick p;
	ck_assert_int_eq(acq(0, &p), API_BATCH_FETCH);
	ck_assert_int_eq(api_batch_fetch_done(&b, 0, API_BATCH_FETCH_TRANSIENT, NULL, 0), 0);
	ck_assert_int_eq(acq(1 * SEC, &p), API_BATCH_GLOBAL); /* no token, no fetch for now */
	ck_assert_int_eq(acq((int64_t)API_BATCH_REFETCH_MS * MS, &p), API_BATCH_FETCH);
}
END_TEST

START_TEST(test_per_token_limiter)
{
	struct api_bpick p;
	fetch_ok(0, "t1", 100000);
	ck_assert_int_eq(api_batch_fetch_done(&b, 0, API_BATCH_FETCH_OK, "t2", 100000), 0);
	/* burst 2 per token, then 10/s: the third request on one token waits 100 ms */
	ck_assert_int_eq(acq(0, &p), API_BATCH_USE);
	ck_assert_int_eq(api_batch_throttle_ns(&b, &p, 0), 0);
	ck_assert_int_eq(api_batch_throttle_ns(&b, &p, 0), 0);
	ck_assert_int_eq(api_batch_throttle_ns(&b, &p, 0), 100 * MS);
	char used[64];
	snprintf(used, sizeof(used), "%s", p.hdr);
	api_batch_done(&b, &p, 0);
	/* the next pick prefers the token whose limiter has room */
	ck_assert_int_eq(acq(0, &p), API_BATCH_USE);
	ck_assert_str_ne(p.hdr, used);
	ck_assert_int_eq(api_batch_throttle_ns(&b, &p, 0), 0);
	api_batch_done(&b, &p, 0);
	/* a pick whose slot was refilled by another token does not charge the new one */
	ck_assert_int_eq(acq(0, &p), API_BATCH_USE);
	struct api_bpick stale = p;
	stale.hdr = NULL;
	api_batch_done(&b, &p, 1);
	ck_assert_int_eq(api_batch_throttle_ns(&b, &stale, 0), 0);
}
END_TEST

START_TEST(test_host_down_and_refusal_run)
{
	struct api_bpick p;
	fetch_ok(0, "t1", 100000);
	fetch_ok(0, "t2", 100000);
	api_batch_host_down(&b, 0);
	ck_assert_int_eq(acq(1 * SEC, &p), API_BATCH_GLOBAL); /* unreachable: global for now */
	ck_assert_int_eq(acq((int64_t)API_BATCH_REFETCH_MS * MS, &p), API_BATCH_USE);
	ck_assert_int_eq(api_batch_done(&b, &p, 0), 0);
	/* every fresh token refused: after API_BATCH_MAX_REFUSED in a row, give up once */
	int64_t now = (int64_t)API_BATCH_REFETCH_MS * MS;
	int gave_up = 0, i;
	for (i = 0; i < 3 * API_BATCH_MAX_REFUSED && !gave_up; i++) {
		enum api_batch_act act = acq(now, &p);
		if (act == API_BATCH_FETCH) {
			api_batch_fetch_done(&b, now, API_BATCH_FETCH_OK, "tx", 100000);
			continue;
		}
		ck_assert_int_eq(act, API_BATCH_USE);
		gave_up = api_batch_done(&b, &p, 1);
	}
	ck_assert_int_eq(gave_up, 1);
	ck_assert_int_eq(acq(now, &p), API_BATCH_GLOBAL);
	ck_assert_int_eq(api_batch_disable(&b), 0); /* already given up: no second log line */
}
END_TEST

/* expiresAt as Cloudflare's docs show it: nanoseconds. */
START_TEST(test_expires_at_nanoseconds)
{
	int64_t ms = 0;
	ck_assert_int_eq(api_parse_rfc3339("2023-08-09T15:33:56.273411222Z", &ms), 0);
	ck_assert_int_eq(ms, 1691595236273LL);
}
END_TEST

static Suite *batch_suite(void)
{
	Suite *s = suite_create("api_batch");
	TCase *t = tcase_create("pool");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_covered);
	tcase_add_test(t, test_url_and_first_fetch);
	tcase_add_test(t, test_renew_before_expiry);
	tcase_add_test(t, test_refused_token_dropped);
	tcase_add_test(t, test_permanent_failure_falls_back_once);
	tcase_add_test(t, test_transient_failure_pauses);
	tcase_add_test(t, test_per_token_limiter);
	tcase_add_test(t, test_host_down_and_refusal_run);
	tcase_add_test(t, test_expires_at_nanoseconds);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(batch_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

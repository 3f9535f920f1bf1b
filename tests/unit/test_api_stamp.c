/*
 * test_api_stamp.c - unit tests of api/api_stamp.c: the stamp value's format, splitting
 * metadata into the user's part and the stamp, joining them back, and the 1024-byte limit.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_stamp.h"

static struct api_stamp stamp(int64_t sec, int32_t nsec, int64_t size)
{
	struct api_stamp st;
	api_stamp_init(&st);
	st.has_mtime = sec != 0 || nsec != 0;
	st.mtime_sec = sec;
	st.mtime_nsec = nsec;
	st.size = size;
	return st;
}

START_TEST(test_format_parse_roundtrip)
{
	char buf[API_STAMP_VALUE_MAX];
	struct api_stamp st = stamp(1577836800, 123456789, 268), got;
	ck_assert_int_gt(api_stamp_format(&st, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "v1 m=1577836800.123456789 s=268");
	ck_assert_int_eq(api_stamp_parse(buf, &got), 0);
	ck_assert_int_eq(got.has_mtime, 1);
	ck_assert_int_eq(got.mtime_sec, 1577836800);
	ck_assert_int_eq(got.mtime_nsec, 123456789);
	ck_assert_int_eq(got.size, 268);

	st = stamp(0, 0, 10); /* size only */
	api_stamp_format(&st, buf, sizeof(buf));
	ck_assert_str_eq(buf, "v1 s=10");
	ck_assert_int_eq(api_stamp_parse(buf, &got), 0);
	ck_assert_int_eq(got.has_mtime, 0);
	ck_assert_int_eq(got.size, 10);

	st = stamp(-86400, 5, -1); /* before 1970, mtime only */
	api_stamp_format(&st, buf, sizeof(buf));
	ck_assert_str_eq(buf, "v1 m=-86400.000000005");
	ck_assert_int_eq(api_stamp_parse(buf, &got), 0);
	ck_assert_int_eq(got.mtime_sec, -86400);
	ck_assert_int_eq(got.mtime_nsec, 5);
	ck_assert_int_eq(got.size, -1);

	api_stamp_init(&st);
	ck_assert_int_eq(api_stamp_format(&st, buf, sizeof(buf)), -EINVAL);
}
END_TEST

START_TEST(test_parse_rejects_malformed)
{
	static const char *const bad[] = {
	    "",
	    "v1",
	    "v2 s=1",
	    "v1 s=",
	    "v1 s=-1",
	    "v1 s=12x",
	    "v1 m=1.5",			 /* nanoseconds are 9 digits */
	    "v1 m=1.0000000001",	 /* 10 digits */
	    "v1 m=1 s=2",		 /* no fraction */
	    "v1 s=2 m=1.000000000",	 /* fixed order */
	    "v1 m=1.000000000  s=2",	 /* one space */
	    "v1 s=99999999999999999999", /* too many digits */
	    "hello",
	    "v1 s=1 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct api_stamp st;
		ck_assert_msg(api_stamp_parse(bad[i], &st) == -EINVAL, "accepted '%s'", bad[i]);
		ck_assert(api_stamp_empty(&st));
	}
}
END_TEST

START_TEST(test_split)
{
	struct api_stamp st;
	char *user;
	ck_assert_int_eq(
	    api_stamp_split("{\"a\":1,\"imagesfs\":\"v1 m=10.000000001 s=5\",\"b\":\"x\"}", &st,
			    &user),
	    0);
	ck_assert_str_eq(user, "{\"a\":1,\"b\":\"x\"}");
	ck_assert_int_eq(st.mtime_sec, 10);
	ck_assert_int_eq(st.mtime_nsec, 1);
	ck_assert_int_eq(st.size, 5);
	free(user);

	/* only the stamp: no user part */
	ck_assert_int_eq(api_stamp_split("{\"imagesfs\":\"v1 s=5\"}", &st, &user), 0);
	ck_assert_ptr_null(user);
	ck_assert_int_eq(st.size, 5);

	/* none */
	ck_assert_int_eq(api_stamp_split(NULL, &st, &user), 0);
	ck_assert_ptr_null(user);
	ck_assert(api_stamp_empty(&st));
	ck_assert_int_eq(api_stamp_split("{\"k\":[1,2]}", &st, &user), 0);
	ck_assert_str_eq(user, "{\"k\":[1,2]}");
	ck_assert(api_stamp_empty(&st));
	free(user);
}
END_TEST

START_TEST(test_split_ignores_foreign)
{
	struct api_stamp st;
	char *user;
	/* a foreign program's value of the key: no stamp, and the key stays hidden */
	ck_assert_int_eq(api_stamp_split("{\"imagesfs\":{\"owner\":\"me\"},\"a\":1}", &st, &user),
			 0);
	ck_assert(api_stamp_empty(&st));
	ck_assert_str_eq(user, "{\"a\":1}");
	free(user);
	ck_assert_int_eq(api_stamp_split("{\"imagesfs\":\"v1 s=oops\"}", &st, &user), 0);
	ck_assert(api_stamp_empty(&st));
	ck_assert_ptr_null(user);
	ck_assert_int_eq(api_stamp_split("{\"imagesfs\":42}", &st, &user), 0);
	ck_assert(api_stamp_empty(&st));
	/* not an object at all: passed through */
	ck_assert_int_eq(api_stamp_split("[1]", &st, &user), 0);
	ck_assert_str_eq(user, "[1]");
	ck_assert(api_stamp_empty(&st));
	free(user);
}
END_TEST

START_TEST(test_join)
{
	struct api_stamp st = stamp(1577836800, 0, 268);
	char *out;
	ck_assert_int_eq(api_stamp_join("{\"a\":1}", &st, &out), 0);
	ck_assert_str_eq(out, "{\"a\":1,\"imagesfs\":\"v1 m=1577836800.000000000 s=268\"}");
	free(out);
	/* a reserved key in the user's part is replaced, not duplicated */
	ck_assert_int_eq(api_stamp_join("{\"imagesfs\":\"junk\",\"a\":1}", &st, &out), 0);
	ck_assert_str_eq(out, "{\"a\":1,\"imagesfs\":\"v1 m=1577836800.000000000 s=268\"}");
	free(out);
	ck_assert_int_eq(api_stamp_join(NULL, &st, &out), 0);
	ck_assert_str_eq(out, "{\"imagesfs\":\"v1 m=1577836800.000000000 s=268\"}");
	free(out);
	ck_assert_int_eq(api_stamp_join(NULL, NULL, &out), 0);
	ck_assert_str_eq(out, "{}");
	free(out);
	ck_assert_int_eq(api_stamp_join("{\"a\":1,\"imagesfs\":\"v1 s=1\"}", NULL, &out), 0);
	ck_assert_str_eq(out, "{\"a\":1}");
	free(out);
	ck_assert_int_eq(api_stamp_join("[1]", &st, &out), -EINVAL);
	ck_assert_ptr_null(out);
}
END_TEST

/* A user object of n bytes (compact): {"k":"xxx..."} */
static char *user_of(size_t n)
{
	char *s = malloc(n + 1);
	memcpy(s, "{\"k\":\"", 6);
	memset(s + 6, 'x', n - 8);
	memcpy(s + n - 2, "\"}", 3);
	return s;
}

START_TEST(test_join_counts_the_stamp)
{
	struct api_stamp st = stamp(1577836800, 0, 268);
	char *out, val[API_STAMP_VALUE_MAX];
	int vl = api_stamp_format(&st, val, sizeof(val));
	/* ,"imagesfs":"VALUE" adds 14 + vl bytes to the user's object */
	size_t room = API_MAX_METADATA_BYTES - 14 - (size_t)vl;
	char *fits = user_of(room), *over = user_of(room + 1);
	ck_assert_int_eq(api_stamp_join(fits, &st, &out), 0);
	ck_assert_uint_eq(strlen(out), API_MAX_METADATA_BYTES);
	free(out);
	ck_assert_int_eq(api_stamp_join(over, &st, &out), -E2BIG);
	ck_assert_ptr_null(out);
	/* without a stamp the same user object fits */
	ck_assert_int_eq(api_stamp_join(over, NULL, &out), 0);
	free(out);
	free(fits);
	free(over);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("api_stamp");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_format_parse_roundtrip);
	tcase_add_test(tc, test_parse_rejects_malformed);
	tcase_add_test(tc, test_split);
	tcase_add_test(tc, test_split_ignores_foreign);
	tcase_add_test(tc, test_join);
	tcase_add_test(tc, test_join_counts_the_stamp);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

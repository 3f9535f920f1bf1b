/* Unit tests for api_doc.c: the JSON documents shown through the filesystem. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_doc.h"

static int norm(const char *s, char **out)
{
	return api_json_object_normalize(s, strlen(s), out);
}

START_TEST(test_normalize_accepts_objects)
{
	char *out = NULL;

	ck_assert_int_eq(norm(" {\"a\" : 1, \"b\":[true,null]}\n", &out), 0);
	ck_assert_str_eq(out, "{\"a\":1,\"b\":[true,null]}");
	free(out);
	ck_assert_int_eq(norm("{}", NULL), 0);
}
END_TEST

START_TEST(test_normalize_rejects_non_objects)
{
	static const char *bad[] = {"",       "[]",    "\"s\"",        "12",        "null",
				    "{",      "{}}",   "{} x",         "{'a':1}",   "{\"a\":}",
				    "{\"a\":1,}", "true", "{\"a\":1}{}", "\x01{}"};
	char *out = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(norm(bad[i], &out) == -EINVAL, "accepted '%s'", bad[i]);
		ck_assert_ptr_null(out);
	}
}
END_TEST

START_TEST(test_normalize_depth_capped)
{
	char deep[300];
	size_t n = 0;

	for (int i = 0; i < 40; i++) {
		memcpy(deep + n, "{\"a\":", 5);
		n += 5;
	}
	deep[n++] = '1';
	for (int i = 0; i < 40; i++)
		deep[n++] = '}';
	ck_assert_int_eq(api_json_object_normalize(deep, n, NULL), -EINVAL);
}
END_TEST

START_TEST(test_normalize_embedded_nul)
{
	const char s[] = "{}\0{}";

	ck_assert_int_eq(api_json_object_normalize(s, sizeof(s) - 1, NULL), -EINVAL);
}
END_TEST

START_TEST(test_variant_doc_roundtrip)
{
	const char *doc = "{\"options\":{\"fit\":\"scale-down\",\"width\":1366,\"height\":768,"
			  "\"metadata\":\"none\"},\"neverRequireSignedURLs\":true}";
	struct api_variant v = {0};
	char *opts = NULL, *text;
	int never = 7;

	ck_assert_int_eq(api_variant_doc_parse(doc, strlen(doc), &opts, &never), 0);
	ck_assert_int_eq(never, 1);
	ck_assert_str_eq(opts, "{\"fit\":\"scale-down\",\"width\":1366,\"height\":768,"
			       "\"metadata\":\"none\"}");
	v.id = "hero";
	v.options_json = opts;
	v.never_require_signed_urls = 1;
	text = api_variant_doc_format(&v);
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "{\"options\":{\"fit\":\"scale-down\",\"width\":1366,\"height\":768,"
			       "\"metadata\":\"none\"},\"neverRequireSignedURLs\":true}\n");
	free(text);
	free(opts);
}
END_TEST

START_TEST(test_variant_doc_optional_and_invalid)
{
	char *opts = NULL;
	int never = 0;
	static const char *bad[] = {"{}", "{\"options\":1}", "{\"options\":{},\"x\":1}",
				    "{\"options\":{},\"neverRequireSignedURLs\":\"yes\"}", "[]",
				    "{\"options\":{}"};

	ck_assert_int_eq(api_variant_doc_parse("{\"id\":\"h\",\"options\":{}}", 23, &opts, &never),
			 0);
	ck_assert_int_eq(never, -1);
	ck_assert_str_eq(opts, "{}");
	free(opts);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(api_variant_doc_parse(bad[i], strlen(bad[i]), &opts, &never) ==
				      -EINVAL,
			      "accepted '%s'", bad[i]);
		ck_assert_ptr_null(opts);
	}
}
END_TEST

START_TEST(test_stats_doc)
{
	char buf[128];

	ck_assert_int_gt(api_stats_doc_format(100000, 42, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "{\"count\":{\"allowed\":100000,\"current\":42}}\n");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("api_doc");
	TCase *tc = tcase_create("docs");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_normalize_accepts_objects);
	tcase_add_test(tc, test_normalize_rejects_non_objects);
	tcase_add_test(tc, test_normalize_depth_capped);
	tcase_add_test(tc, test_normalize_embedded_nul);
	tcase_add_test(tc, test_variant_doc_roundtrip);
	tcase_add_test(tc, test_variant_doc_optional_and_invalid);
	tcase_add_test(tc, test_stats_doc);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

/*
 * test_api_sign.c - unit tests of signed delivery URLs (api/api_sign.c).
 *
 * The vector is the documented example (reference §5: path
 * /cheeW4oKsx5ljh8e8BoL2A/bc27a117-9509-446b-8c69-c81bfeac0a01/mobile, exp 1631289275)
 * signed with the spec's example key "Oix0bbNaT8Rge9PuyxUBrjI6zrgnsyJ5=". The expected MAC
 * was computed independently of this code:
 *   printf '%s'
 * '/cheeW4oKsx5ljh8e8BoL2A/bc27a117-9509-446b-8c69-c81bfeac0a01/mobile?exp=1631289275' \ | openssl
 * dgst -sha256 -hmac 'Oix0bbNaT8Rge9PuyxUBrjI6zrgnsyJ5=' (and the same with Python's hmac module).
 */
#include "api.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EX_KEY "Oix0bbNaT8Rge9PuyxUBrjI6zrgnsyJ5="
#define EX_PATH "/cheeW4oKsx5ljh8e8BoL2A/bc27a117-9509-446b-8c69-c81bfeac0a01/mobile"
#define EX_EXP 1631289275
#define EX_SIG "72411885ee02134d38662f3e70ac8ff694f408e9d14b05125f6b022c3f403efa"

START_TEST(test_sign_hex_vector)
{
	char hex[API_SIG_HEX_LEN + 1];

	ck_assert_int_eq(api_sign_hex(EX_KEY, EX_PATH "?exp=1631289275", hex), 0);
	ck_assert_str_eq(hex, EX_SIG);
	/* RFC 4231 test case 2: key "Jefe" */
	ck_assert_int_eq(api_sign_hex("Jefe", "what do ya want for nothing?", hex), 0);
	ck_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(test_sign_url_documented)
{
	char out[512];

	ck_assert_int_eq(
	    api_sign_url("https://imagedelivery.net" EX_PATH, EX_KEY, EX_EXP, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "https://imagedelivery.net" EX_PATH "?exp=1631289275&sig=" EX_SIG);
	/* host and scheme are not signed: another host gives the same token */
	ck_assert_int_eq(
	    api_sign_url("http://127.0.0.1:8080" EX_PATH, EX_KEY, EX_EXP, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "http://127.0.0.1:8080" EX_PATH "?exp=1631289275&sig=" EX_SIG);
	/* a path prefix (custom domain, emulator base) is part of the pathname that is signed */
	ck_assert_int_eq(api_sign_url("http://h/cdn" EX_PATH, EX_KEY, EX_EXP, out, sizeof(out)), 0);
	ck_assert_ptr_null(strstr(out, EX_SIG));
}
END_TEST

START_TEST(test_sign_url_changes)
{
	char a[512], b[512];

	ck_assert_int_eq(api_sign_url("https://x" EX_PATH, EX_KEY, EX_EXP, a, sizeof(a)), 0);
	ck_assert_int_eq(api_sign_url("https://x" EX_PATH, EX_KEY, EX_EXP + 1, b, sizeof(b)), 0);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(api_sign_url("https://x" EX_PATH, "other", EX_EXP, b, sizeof(b)), 0);
	ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_sign_url_refuses)
{
	char out[512], small[40], big[API_MAX_KEY_VALUE_LEN + 2];

	strcpy(out, "untouched");
	ck_assert_int_eq(api_sign_url("imagedelivery.net/a/b/c", EX_KEY, 1, out, sizeof(out)),
			 -EINVAL);
	ck_assert_int_eq(api_sign_url("https://h/a/b/c?x=1", EX_KEY, 1, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(api_sign_url("https://h", EX_KEY, 1, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(api_sign_url("https://h/a", EX_KEY, -1, out, sizeof(out)), -EINVAL);
	ck_assert_str_eq(out, "untouched");
	strcpy(small, "untouched");
	ck_assert_int_eq(api_sign_url("https://h/a/b/c", EX_KEY, 1, small, sizeof(small)),
			 -ENAMETOOLONG);
	ck_assert_str_eq(small, "untouched");
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(api_sign_url("https://h/a", big, 1, out, sizeof(out)), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("api_sign");
	TCase *tc = tcase_create("sign");
	tcase_add_test(tc, test_sign_hex_vector);
	tcase_add_test(tc, test_sign_url_documented);
	tcase_add_test(tc, test_sign_url_changes);
	tcase_add_test(tc, test_sign_url_refuses);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

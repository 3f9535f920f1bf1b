/*
 * test_client.c - integration tests of the API client (api/) against a real emulator
 * process (tests/emulator) started per test through tests/support/emu_proc.c.
 *
 * Covers every endpoint, uploads of each format from an fd and from a URL (a loopback
 * origin from tests/unit/fake_http.c), custom ids that need escaping, every validation
 * error and its errno, listing across page boundaries with request counts checked against
 * the emulator's own stats, keys, variants, auth, persistence across a restart, eight
 * threads sharing a client, injected faults (lost responses, 503s, truncated bodies, 429
 * with Retry-After, stalls), and a dead server.
 */
#include "api.h"
#include "emu_proc.h"
#include "fake_http.h"
#include "test_client.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct emu_proc E;
struct api_client *C;

const struct tc_image TC_IMAGES[TC_NIMAGES] = {
    {"png", "image/png", TC_PNG, sizeof(TC_PNG) - 1},
    {"jpg", "image/jpeg",
     "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9", 22},
    {"gif", "image/gif",
     "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
     "\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
     43},
    {"webp", "image/webp",
     "RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07"
     "\x10\x11\x11\x88\x88\xfe\x07\x00",
     34},
    {"svg", "image/svg+xml",
     "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" "
     "height=\"1\"/>\n",
     83},
};

/* ---- helpers shared by the test files -------------------------------------------- */

void tc_emu_start(const char *const *args, const char *const *env_extra)
{
	const char *env[8] = {"IMAGESFS_EMULATOR_TOKEN=" TC_TOKEN, "IMAGESFS_EMULATOR_AUTH_KEY"};
	size_t n = 2;
	for (const char *const *x = env_extra; x && *x && n < 7; x++)
		env[n++] = *x;
	env[n] = NULL;
	ck_assert_int_eq(emu_proc_start(&E, args, env, 10000), 0);
	C = tc_client(TC_TOKEN, NULL, NULL, 3);
}

void tc_emu_stop(void)
{
	api_client_free(C);
	C = NULL;
	ck_assert_int_eq(emu_proc_stop(&E), 0); /* a clean exit: no crash, no leak report */
}

void tc_default_setup(void)
{
	tc_emu_start(NULL, NULL);
}

void tc_default_teardown(void)
{
	tc_emu_stop();
}

struct api_client *tc_client_url(const char *url, const char *token, const char *email,
				 const char *key, int max_attempts)
{
	struct api_config cfg = {.base_url = url,
				 .account_id = TC_ACCOUNT,
				 .token = token,
				 .auth_email = email,
				 .auth_key = key,
				 .max_attempts = max_attempts,
				 .retry_budget_ms = 20000,
				 .rate_per_sec = -1,
				 .connect_timeout_ms = 2000,
				 .request_timeout_ms = 60000};
	struct api_client *c = NULL;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	return c;
}

struct api_client *tc_client(const char *token, const char *email, const char *key,
			     int max_attempts)
{
	return tc_client_url(E.base_url, token, email, key, max_attempts);
}

int tc_memfd(const void *data, size_t len)
{
	char path[] = "/tmp/imagesfs_itest_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, (const char *)data + off, len - off);
		ck_assert_int_gt(w, 0);
		off += (size_t)w;
	}
	return fd;
}

int tc_upload(const char *id, const void *data, size_t len, const char *filename, const char *meta,
	      const char *creator, int rsu, struct api_image *out, struct api_err *err)
{
	struct api_image tmp;
	int fd = tc_memfd(data, len);
	struct api_upload up = {.id = id,
				.fd = fd,
				.filename = filename,
				.metadata_json = meta,
				.creator = creator,
				.require_signed_urls = rsu};
	int rc = api_image_upload(C, &up, out ? out : &tmp, err);
	if (!out && rc == 0)
		api_image_release(&tmp);
	close(fd);
	return rc;
}

char *tc_blob(struct api_client *c, const char *id, size_t *len, char *ct, size_t ctlen,
	      int *rc_out)
{
	int fd = tc_memfd(NULL, 0);
	uint64_t size = 0;
	struct api_err e;
	char *p = NULL;
	*rc_out = api_image_blob(c, id, fd, 0, &size, ct, ctlen, &e);
	if (*rc_out == 0) {
		p = malloc(size + 1);
		ck_assert_int_eq(pread(fd, p, size, 0), (ssize_t)size);
		p[size] = '\0';
		*len = (size_t)size;
	}
	close(fd);
	return p;
}

int64_t tc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tc_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_cb(const struct api_image *img, void *arg)
{
	struct tc_list *l = arg;
	ck_assert_ptr_nonnull(img->id);
	if (l->want_id && strcmp(img->id, l->want_id) == 0)
		l->found++;
	if (l->n > 0 && img->uploaded_ms != l->last_ms) {
		if (img->uploaded_ms > l->last_ms)
			l->ascending++;
		else
			l->descending++;
	}
	l->last_ms = img->uploaded_ms;
	l->n++;
	return 0;
}

int tc_list(const struct api_list_opts *o, struct tc_list *l, int *requests)
{
	struct api_err e;
	int rc = api_images_list(C, o, count_cb, l, requests, &e);
	if (rc) {
		char buf[300];
		fprintf(stderr, "list failed: %s\n", api_err_str(&e, buf, sizeof(buf)));
	}
	return rc;
}

/* ---- uploads and images ---------------------------------------------------------- */

START_TEST(test_upload_every_format_roundtrip)
{
	for (int i = 0; i < TC_NIMAGES; i++) {
		const struct tc_image *t = &TC_IMAGES[i];
		struct api_image img, got;
		struct api_err e;
		char id[64], fname[64], meta[64], ct[64];
		size_t len;
		int rc;
		snprintf(id, sizeof(id), "fmt/%s", t->ext);
		snprintf(fname, sizeof(fname), "x.%s", t->ext);
		snprintf(meta, sizeof(meta), "{\"fmt\":\"%s\"}", t->ext);
		int64_t before = tc_now_ms();
		ck_assert_int_eq(
		    tc_upload(id, t->data, t->len, fname, meta, "tester", -1, &img, &e), 0);
		ck_assert_str_eq(img.id, id);
		ck_assert_str_eq(img.filename, fname);
		ck_assert_str_eq(img.creator, "tester");
		ck_assert_str_eq(img.meta_json, meta);
		ck_assert_int_eq(img.require_signed_urls, 0);
		ck_assert_int_ge(img.uploaded_ms, before - 5000);
		ck_assert_int_le(img.uploaded_ms, tc_now_ms() + 5000);
		ck_assert_uint_ge(img.n_variants, 1);
		ck_assert_ptr_nonnull(strstr(img.variants[0], id));
		ck_assert_int_eq(api_image_get(C, id, &got, &e), 0);
		ck_assert_str_eq(got.filename, fname);
		ck_assert_int_eq(got.uploaded_ms, img.uploaded_ms);
		char *blob = tc_blob(C, id, &len, ct, sizeof(ct), &rc);
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(len, t->len);
		ck_assert_mem_eq(blob, t->data, t->len);
		ck_assert_str_eq(ct, t->mime);
		free(blob);
		api_image_release(&img);
		api_image_release(&got);
	}
}
END_TEST

START_TEST(test_upload_generated_id_and_private)
{
	struct api_image img;
	ck_assert_int_eq(
	    tc_upload(NULL, TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, 1, &img, NULL), 0);
	ck_assert_uint_eq(strlen(img.id), 36);
	ck_assert_int_eq(api_custom_id_valid(img.id), -EINVAL); /* UUID-shaped */
	ck_assert_int_eq(img.require_signed_urls, 1);
	ck_assert_str_eq(img.filename, "file"); /* the default part filename */
	ck_assert_ptr_null(img.creator);
	ck_assert_ptr_null(img.meta_json);
	api_image_release(&img);
}
END_TEST

START_TEST(test_upload_from_url)
{
	struct fake_http origin;
	struct api_image img;
	struct api_err e;
	char raw[256], url[128], ct[64];
	size_t len;
	int rc;
	memset(&origin, 0, sizeof(origin));
	int n = snprintf(raw, sizeof(raw),
			 "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 sizeof(TC_PNG) - 1);
	memcpy(raw + n, TC_PNG, sizeof(TC_PNG) - 1);
	fake_add_raw(&origin, raw, (size_t)n + sizeof(TC_PNG) - 1);
	fake_add_reply(&origin, 404, NULL, "no");
	ck_assert_int_eq(fake_http_start(&origin), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/img/pic.png", origin.port);
	struct api_upload up = {.fd = -1, .url = url, .id = "from/url", .require_signed_urls = -1};
	ck_assert_int_eq(api_image_upload(C, &up, &img, &e), 0);
	ck_assert_str_eq(img.id, "from/url");
	ck_assert_str_eq(img.filename, "pic.png");
	api_image_release(&img);
	char *blob = tc_blob(C, "from/url", &len, ct, sizeof(ct), &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_mem_eq(blob, TC_PNG, sizeof(TC_PNG) - 1);
	free(blob);
	ck_assert_ptr_nonnull(strstr(origin.reqs[0].head, "GET /img/pic.png HTTP/1.1"));
	/* The origin answers 404: the upload fails with EINVAL (5400). */
	up.id = "from/url2";
	ck_assert_int_eq(api_image_upload(C, &up, &img, &e), -EINVAL);
	ck_assert_int_eq(e.cf_code, 5400);
	fake_http_stop(&origin);
}
END_TEST

START_TEST(test_custom_ids_need_escaping)
{
	static const char *const ids[] = {"dir/sub/deeper/file.png", "with space.png",
					  "caf\xC3\xA9/\xE6\x97\xA5\xE6\x9C\xAC.png",
					  "per%25cent+plus?q=1&x#frag.png", "~tilde_.-dash"};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct api_image img;
		struct api_err e;
		struct tc_list l = {.want_id = ids[i]};
		size_t len;
		int rc;
		ck_assert_int_eq(api_custom_id_valid(ids[i]), 0);
		ck_assert_int_eq(tc_upload(ids[i], TC_PNG, sizeof(TC_PNG) - 1, "a.png", NULL, NULL,
					   -1, &img, &e),
				 0);
		ck_assert_str_eq(img.id, ids[i]);
		api_image_release(&img);
		ck_assert_int_eq(api_image_get(C, ids[i], &img, &e), 0);
		ck_assert_str_eq(img.id, ids[i]);
		api_image_release(&img);
		char *blob = tc_blob(C, ids[i], &len, NULL, 0, &rc);
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(len, sizeof(TC_PNG) - 1);
		free(blob);
		ck_assert_int_eq(tc_list(NULL, &l, NULL), 0);
		ck_assert_int_eq(l.found, 1);
		ck_assert_int_eq(api_image_delete(C, ids[i], &e), 0);
		ck_assert_int_eq(api_image_get(C, ids[i], &img, &e), -ENOENT);
		ck_assert_int_eq(e.cf_code, 5404);
	}
	/* The parent of a sub-path id is not an image. */
	struct api_image img;
	ck_assert_int_eq(
	    tc_upload("p/q", TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	ck_assert_int_eq(api_image_get(C, "p", &img, NULL), -ENOENT);
}
END_TEST

static void expect_upload_error(const char *id, const void *data, size_t len, const char *meta,
				const char *creator, int rsu, int want_errno, int want_code)
{
	struct api_err e;
	struct api_image img;
	int rc = tc_upload(id, data, len, NULL, meta, creator, rsu, &img, &e);
	char buf[300];
	ck_assert_msg(rc == -want_errno && e.cf_code == want_code,
		      "upload id '%.40s': rc %d (%s), want -%d code %d", id ? id : "(null)", rc,
		      api_err_str(&e, buf, sizeof(buf)), want_errno, want_code);
	ck_assert_ptr_null(img.id);
}

START_TEST(test_upload_validation_errors)
{
	const void *png = TC_PNG;
	size_t pl = sizeof(TC_PNG) - 1;
	char big_meta[1200], long_creator[1100], long_id[1100];
	ck_assert_int_eq(tc_upload("dup", png, pl, NULL, NULL, NULL, -1, NULL, NULL), 0);
	expect_upload_error("dup", png, pl, NULL, NULL, -1, EEXIST, 5409);
	expect_upload_error("txt", "hello, not an image", 19, NULL, NULL, -1, EINVAL, 5455);
	expect_upload_error("empty", "", 0, NULL, NULL, -1, EINVAL, 5455);
	expect_upload_error("m1", png, pl, "not json", NULL, -1, EINVAL, 5400);
	expect_upload_error("m2", png, pl, "[1,2]", NULL, -1, EINVAL, 5400);
	int n = snprintf(big_meta, sizeof(big_meta), "{\"k\":\"");
	memset(big_meta + n, 'x', 1100);
	snprintf(big_meta + n + 1100, sizeof(big_meta) - (size_t)n - 1100, "\"}");
	expect_upload_error("m3", png, pl, big_meta, NULL, -1, EINVAL, 5400);
	expect_upload_error("083eb7b2-5392-4565-b69e-aff66acddd00", png, pl, NULL, NULL, -1, EINVAL,
			    5400);
	expect_upload_error("083EB7B2-5392-4565-B69E-AFF66ACDDD00", png, pl, NULL, NULL, -1, EINVAL,
			    5400);
	expect_upload_error("/lead", png, pl, NULL, NULL, -1, EINVAL, 5400);
	expect_upload_error("trail/", png, pl, NULL, NULL, -1, EINVAL, 5400);
	memset(long_id, 'i', 1025);
	long_id[1025] = '\0';
	expect_upload_error(long_id, png, pl, NULL, NULL, -1, EINVAL, 5400);
	long_id[1024] = '\0';
	ck_assert_int_eq(tc_upload(long_id, png, pl, NULL, NULL, NULL, -1, NULL, NULL), 0);
	expect_upload_error("private", png, pl, NULL, NULL, 1, EINVAL, 5400);
	memset(long_creator, 'c', 1025);
	long_creator[1025] = '\0';
	expect_upload_error("cr", png, pl, NULL, long_creator, -1, EINVAL, 5400);
	/* Over 10 MB: streamed, refused by the server. */
	size_t big = (size_t)API_MAX_IMAGE_BYTES + 1;
	char *huge = calloc(1, big);
	memcpy(huge, png, pl);
	expect_upload_error("huge", huge, big, NULL, NULL, -1, EFBIG, 5413);
	/* Exactly 10 MB is fine. */
	ck_assert_int_eq(tc_upload("tenmb", huge, big - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	free(huge);
	/* Neither or both of file/url cannot even be expressed to the server. */
	struct api_upload none = {.fd = -1, .require_signed_urls = -1};
	struct api_err e;
	struct api_image img;
	ck_assert_int_eq(api_image_upload(C, &none, &img, &e), -EINVAL);
	ck_assert_int_eq(e.http_status, 0);
}
END_TEST

START_TEST(test_not_found_everywhere)
{
	struct api_image img;
	struct api_err e;
	struct api_variant v;
	int fd = tc_memfd(NULL, 0);
	ck_assert_int_eq(api_image_get(C, "nope", &img, &e), -ENOENT);
	ck_assert_int_eq(e.http_status, 404);
	ck_assert_int_eq(e.cf_code, 5404);
	ck_assert_int_eq(api_image_blob(C, "nope", fd, 0, NULL, NULL, 0, &e), -ENOENT);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_int_eq(api_image_delete(C, "nope", &e), -ENOENT);
	struct api_image_patch p = {.creator = "x", .require_signed_urls = -1};
	ck_assert_int_eq(api_image_edit(C, "nope", &p, &img, &e), -ENOENT);
	ck_assert_int_eq(api_variant_get(C, "nope", &v, &e), -ENOENT);
	ck_assert_int_eq(e.cf_code, 5401);
	ck_assert_int_eq(api_variant_delete(C, "nope", &e), -ENOENT);
	close(fd);
}
END_TEST

START_TEST(test_edit_image)
{
	struct api_image img;
	struct api_err e;
	ck_assert_int_eq(
	    tc_upload(NULL, TC_PNG, sizeof(TC_PNG) - 1, "e.png", "{\"a\":1}", "bob", 0, &img, &e),
	    0);
	char *id = strdup(img.id);
	api_image_release(&img);
	struct api_image_patch p = {
	    .metadata_json = "{\"b\":[true,null]}", .creator = "carol", .require_signed_urls = 1};
	ck_assert_int_eq(api_image_edit(C, id, &p, &img, &e), 0);
	ck_assert_str_eq(img.meta_json, "{\"b\":[true,null]}");
	ck_assert_str_eq(img.creator, "carol");
	ck_assert_int_eq(img.require_signed_urls, 1);
	api_image_release(&img);
	struct api_image_patch none = {.require_signed_urls = -1};
	ck_assert_int_eq(api_image_edit(C, id, &none, &img, &e), 0); /* unchanged */
	ck_assert_str_eq(img.creator, "carol");
	api_image_release(&img);
	ck_assert_int_eq(api_image_get(C, id, &img, &e), 0);
	ck_assert_str_eq(img.meta_json, "{\"b\":[true,null]}");
	ck_assert_int_eq(img.require_signed_urls, 1);
	api_image_release(&img);
	struct api_image_patch big = {.metadata_json = "{}", .require_signed_urls = -1};
	char creator[1100];
	memset(creator, 'z', 1025);
	creator[1025] = '\0';
	big.creator = creator;
	ck_assert_int_eq(api_image_edit(C, id, &big, &img, &e), -EINVAL);
	ck_assert_int_eq(e.cf_code, 5400);
	/* A custom-id image cannot become private. */
	ck_assert_int_eq(
	    tc_upload("pub/only", TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	struct api_image_patch priv = {.require_signed_urls = 1};
	ck_assert_int_eq(api_image_edit(C, "pub/only", &priv, &img, &e), -EINVAL);
	free(id);
}
END_TEST

/* test_client_more.c */
void tc_add_more_tests(Suite *s);

static Suite *client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("images");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, tc_default_setup, tc_default_teardown);
	tcase_add_test(tc, test_upload_every_format_roundtrip);
	tcase_add_test(tc, test_upload_generated_id_and_private);
	tcase_add_test(tc, test_upload_from_url);
	tcase_add_test(tc, test_custom_ids_need_escaping);
	tcase_add_test(tc, test_upload_validation_errors);
	tcase_add_test(tc, test_not_found_everywhere);
	tcase_add_test(tc, test_edit_image);
	suite_add_tcase(s, tc);
	tc_add_more_tests(s);
	return s;
}

int main(void)
{
#ifdef IMAGESFS_TEST_BIN_DIR
	setenv("IMAGESFS_BIN", IMAGESFS_TEST_BIN_DIR, 0);
#endif
	if (access(emu_proc_binary(), X_OK) != 0) {
		fprintf(stderr, "test_client: emulator '%s' is missing\n", emu_proc_binary());
		return 1;
	}
	if (api_global_init() != 0)
		return 1;
	SRunner *sr = srunner_create(client_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	api_global_cleanup();
	return failed ? 1 : 0;
}

/*
 * test_api.c - unit tests of the API client. Pure pieces are tested directly through
 * api_internal.h; the HTTP layer (retries, caps, auth headers, escaping, failure paths) is
 * tested against fake_http.c, a scripted server on 127.0.0.1.
 */
#include "api_internal.h"
#include "fake_http.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#define IMG_JSON                                                                                   \
	"{\"id\":\"a/b\",\"filename\":\"x.png\",\"creator\":null,\"meta\":{\"k\":\"v\",\"n\":"     \
	"[1,2]},\"requireSignedURLs\":false,\"uploaded\":\"2022-01-31T16:39:28.458Z\","            \
	"\"variants\":[\"https://imagedelivery.net/h/a/b/public\",\"https://x/thumb\"]}"
#define OK_ENV(result) "{\"result\":" result ",\"success\":true,\"errors\":[],\"messages\":[]}"
#define ERR_ENV(code, msg)                                                                         \
	"{\"result\":null,\"success\":false,\"errors\":[{\"code\":" #code ",\"message\":\"" msg    \
	"\"}],\"messages\":[]}"

static struct json_object *parse_or_die(const char *text)
{
	struct json_object *o = NULL;
	char msg[128];
	ck_assert_msg(api_json_parse(text, strlen(text), &o, msg, sizeof(msg)) == 0, "%s", msg);
	return o;
}

/* ---- errno table ------------------------------------------------------------------ */

START_TEST(test_errno_map_table)
{
	static const struct {
		long http;
		int cf, curl, want;
	} rows[] = {
	    {0, 0, CURLE_OPERATION_TIMEDOUT, ETIMEDOUT},
	    {0, 0, CURLE_COULDNT_CONNECT, EIO},
	    {0, 0, CURLE_COULDNT_RESOLVE_HOST, EIO},
	    {0, 0, CURLE_RECV_ERROR, EIO},
	    {0, 0, CURLE_SSL_CONNECT_ERROR, EIO},
	    {0, 0, CURLE_PEER_FAILED_VERIFICATION, EIO},
	    {200, 5404, CURLE_OPERATION_TIMEDOUT, ETIMEDOUT}, /* transport wins */
	    {401, 0, 0, EACCES},
	    {403, 0, 0, EACCES},
	    {400, 9106, 0, EACCES},
	    {400, 6003, 0, EACCES},
	    {401, 10000, 0, EACCES},
	    {403, 10000, 0, EACCES},
	    {403, 5403, 0, EACCES},
	    {404, 0, 0, ENOENT},
	    {404, 5404, 0, ENOENT},
	    {404, 5401, 0, ENOENT},
	    {400, 7003, 0, ENOENT},
	    {404, 7003, 0, ENOENT},
	    {400, 7000, 0, ENOENT},
	    {409, 0, 0, EEXIST},
	    {409, 5409, 0, EEXIST},
	    {400, 5409, 0, EEXIST},
	    {413, 0, 0, EFBIG},
	    {413, 5413, 0, EFBIG},
	    {400, 5413, 0, EFBIG},
	    {415, 5455, 0, EINVAL},
	    {400, 5455, 0, EINVAL},
	    {415, 5415, 0, EINVAL},
	    {400, 5400, 0, EINVAL},
	    {400, 0, 0, EINVAL},
	    {415, 0, 0, EINVAL},
	    {429, 0, 0, EAGAIN},
	    {429, 971, 0, EAGAIN},
	    {429, 10429, 0, EAGAIN},
	    {502, 0, 0, EAGAIN},
	    {503, 0, 0, EAGAIN},
	    {504, 0, 0, EAGAIN},
	    {403, 5453, 0, ENOSPC},
	    {429, 5453, 0, ENOSPC},
	    {408, 5408, 0, ETIMEDOUT},
	    {500, 0, 0, EIO},
	    {500, 5500, 0, EIO},
	    {501, 0, 0, EIO},
	    {418, 0, 0, EIO},
	    {200, 0, 0, EIO},
	    {0, 0, 0, EIO},
	    {400, 1234, 0, EINVAL}, /* unknown code: falls back to the status */
	    {500, 99999, 0, EIO},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		ck_assert_msg(api_errno_map(rows[i].http, rows[i].cf, rows[i].curl) == rows[i].want,
			      "row %zu: http %ld cf %d curl %d -> %d, want %d", i, rows[i].http,
			      rows[i].cf, rows[i].curl,
			      api_errno_map(rows[i].http, rows[i].cf, rows[i].curl), rows[i].want);
}
END_TEST

START_TEST(test_err_str)
{
	struct api_err e = {.http_status = 404, .cf_code = 5404, .attempts = 1};
	char buf[300];
	snprintf(e.message, sizeof(e.message), "Image not found");
	ck_assert_str_eq(api_err_str(&e, buf, sizeof(buf)), "HTTP 404, code 5404: Image not found");
	struct api_err t = {.curl_code = 7, .attempts = 3};
	snprintf(t.message, sizeof(t.message), "Failed to connect");
	ck_assert_str_eq(api_err_str(&t, buf, sizeof(buf)),
			 "curl error 7: Failed to connect (after 3 attempts)");
	struct api_err z = {0};
	ck_assert_str_eq(api_err_str(&z, buf, sizeof(buf)), "");
	ck_assert_str_eq(api_err_str(NULL, buf, sizeof(buf)), "");
	char small[8];
	ck_assert_str_eq(api_err_str(&e, small, sizeof(small)), "HTTP 40");
}
END_TEST

/* ---- custom ids, escaping ---------------------------------------------------------- */

START_TEST(test_custom_id_valid)
{
	char big[API_MAX_ID_LEN + 2];
	ck_assert_int_eq(api_custom_id_valid("photo.png"), 0);
	ck_assert_int_eq(api_custom_id_valid("a/b/c/d.jpg"), 0);
	ck_assert_int_eq(api_custom_id_valid("with space"), 0);
	ck_assert_int_eq(
	    api_custom_id_valid("caf\xC3\xA9/\xE6\x97\xA5\xE6\x9C\xAC/\xF0\x9F\x98\x80"), 0);
	ck_assert_int_eq(api_custom_id_valid("x"), 0);
	ck_assert_int_eq(api_custom_id_valid(""), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid(NULL), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("/lead"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("trail/"), -EINVAL);
	/* route names under /images/v1/ cannot be image ids; as sub-paths they can */
	ck_assert_int_eq(api_custom_id_valid("keys"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("stats"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("variants"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("batch_token"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("direct_upload"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("config"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("config/x.png"), 0);
	ck_assert_int_eq(api_custom_id_valid("keys/a.png"), 0);
	ck_assert_int_eq(api_custom_id_valid("stats.png"), 0);
	ck_assert_int_eq(api_custom_id_valid("/"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("083eb7b2-5392-4565-b69e-aff66acddd00"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("083EB7B2-5392-4565-B69E-AFF66ACDDD00"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("083eB7b2-5392-4565-b69E-aff66acddd00"), -EINVAL);
	/* Not quite UUIDs: fine. */
	ck_assert_int_eq(api_custom_id_valid("083eb7b2-5392-4565-b69e-aff66acddd0"), 0);
	ck_assert_int_eq(api_custom_id_valid("083eb7b2-5392-4565-b69e-aff66acddd00x"), 0);
	ck_assert_int_eq(api_custom_id_valid("083eb7b2_5392-4565-b69e-aff66acddd00"), 0);
	ck_assert_int_eq(api_custom_id_valid("g83eb7b2-5392-4565-b69e-aff66acddd00"), 0);
	ck_assert_int_eq(api_custom_id_valid("tab\there"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("nl\n"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("del\x7f"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("bad\xff"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("cut\xC3"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("overlong\xC0\xAF"), -EINVAL);
	ck_assert_int_eq(api_custom_id_valid("surrogate\xED\xA0\x80"), -EINVAL);
	memset(big, 'a', API_MAX_ID_LEN);
	big[API_MAX_ID_LEN] = '\0';
	ck_assert_int_eq(api_custom_id_valid(big), 0);
	big[API_MAX_ID_LEN] = 'a';
	big[API_MAX_ID_LEN + 1] = '\0';
	ck_assert_int_eq(api_custom_id_valid(big), -EINVAL);
}
END_TEST

START_TEST(test_escape)
{
	char *s = api_escape("a/b c");
	ck_assert_str_eq(s, "a%2Fb%20c");
	free(s);
	s = api_escape("AZaz09-._~");
	ck_assert_str_eq(s, "AZaz09-._~");
	free(s);
	s = api_escape("caf\xC3\xA9?x=1&y#%+");
	ck_assert_str_eq(s, "caf%C3%A9%3Fx%3D1%26y%23%25%2B");
	free(s);
	s = api_escape("");
	ck_assert_str_eq(s, "");
	free(s);
	struct api_buf b = {.max = 5};
	ck_assert_int_eq(api_buf_add_escaped(&b, "//"), -EFBIG);
	ck_assert_int_eq(api_buf_add_escaped(&b, "ab/"), 0);
	ck_assert_str_eq(b.data, "ab%2F");
	api_buf_release(&b);
}
END_TEST

START_TEST(test_buf_caps)
{
	struct api_buf b = {.max = 10};
	ck_assert_int_eq(api_buf_adds(&b, "0123456789"), 0);
	ck_assert_int_eq(api_buf_adds(&b, "x"), -EFBIG);
	ck_assert_uint_eq(b.len, 10);
	api_buf_reset(&b);
	ck_assert_int_eq(api_buf_printf(&b, "%d-%s", 42, "ok"), 0);
	ck_assert_str_eq(b.data, "42-ok");
	ck_assert_int_eq(api_buf_printf(&b, "%s", "too long!"), -EFBIG);
	char *p = api_buf_steal(&b);
	ck_assert_str_eq(p, "42-ok");
	free(p);
	ck_assert_ptr_null(b.data);
}
END_TEST

/* ---- RFC 3339 ------------------------------------------------------------------------ */

START_TEST(test_rfc3339)
{
	int64_t ms = 0;
	ck_assert_int_eq(api_parse_rfc3339("2022-01-31T16:39:28.458Z", &ms), 0);
	ck_assert_int_eq(ms, 1643647168458LL);
	ck_assert_int_eq(api_parse_rfc3339("2022-01-31T16:39:28Z", &ms), 0);
	ck_assert_int_eq(ms, 1643647168000LL);
	ck_assert_int_eq(api_parse_rfc3339("2022-01-31t16:39:28.4z", &ms), 0);
	ck_assert_int_eq(ms, 1643647168400LL);
	ck_assert_int_eq(api_parse_rfc3339("2022-01-31T16:39:28.458999Z", &ms), 0);
	ck_assert_int_eq(ms, 1643647168458LL);
	ck_assert_int_eq(api_parse_rfc3339("2022-01-31T18:39:28.458+02:00", &ms), 0);
	ck_assert_int_eq(ms, 1643647168458LL);
	ck_assert_int_eq(api_parse_rfc3339("2022-01-31T11:09:28-05:30", &ms), 0);
	ck_assert_int_eq(ms, 1643647168000LL);
	ck_assert_int_eq(api_parse_rfc3339("1970-01-01T00:00:00Z", &ms), 0);
	ck_assert_int_eq(ms, 0);
	ck_assert_int_eq(api_parse_rfc3339("1969-12-31T23:59:59.999Z", &ms), 0);
	ck_assert_int_eq(ms, -1);
	ck_assert_int_eq(api_parse_rfc3339("2024-02-29T00:00:00Z", &ms), 0);
	ck_assert_int_eq(ms, 1709164800000LL);
	ck_assert_int_eq(api_parse_rfc3339("2000-03-01 00:00:00Z", &ms), 0);
	ck_assert_int_eq(ms, 951868800000LL);
	static const char *const bad[] = {
	    "",
	    "2022-01-31",
	    "2022-01-31T16:39:28",   /* no offset */
	    "2022-01-31T16:39:28.Z", /* empty fraction */
	    "2022-13-01T00:00:00Z",
	    "2022-00-01T00:00:00Z",
	    "2023-02-29T00:00:00Z",
	    "2022-04-31T00:00:00Z",
	    "2022-01-31T24:00:00Z",
	    "2022-01-31T16:60:00Z",
	    "2022-01-31T16:39:28+0200",
	    "2022-01-31T16:39:28Zjunk",
	    "22-01-31T16:39:28Z",
	    "2022/01/31T16:39:28Z",
	    "2022-01-31T16:39:28+24:00",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(api_parse_rfc3339(bad[i], &ms) == -EINVAL, "accepted '%s'", bad[i]);
	ck_assert_int_eq(api_parse_rfc3339(NULL, &ms), -EINVAL);
}
END_TEST

/* ---- redaction, sniffing ---------------------------------------------------------------- */

START_TEST(test_redact_headers)
{
	const char *in = "GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\n"
			 "x-auth-key: k3y\r\nX-Auth-Email: a@b.c\r\nAccept: */*\r\n\r\n";
	char out[512];
	size_t n = api_redact_headers(in, strlen(in), out, sizeof(out));
	ck_assert_str_eq(out,
			 "GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: [redacted]\r\n"
			 "x-auth-key: [redacted]\r\nX-Auth-Email: a@b.c\r\nAccept: */*\r\n\r\n");
	ck_assert_uint_eq(n, strlen(out));
	ck_assert_ptr_null(strstr(out, "s3cret"));
	ck_assert_ptr_null(strstr(out, "k3y"));
	/* A single header line without newline (curl may pass lines one at a time). */
	const char *one = "AUTHORIZATION: Basic Zm9vOmJhcg==";
	api_redact_headers(one, strlen(one), out, sizeof(out));
	ck_assert_str_eq(out, "AUTHORIZATION: [redacted]");
	/* Too small: lines that do not fit are dropped whole, never cut mid-secret. */
	char tiny[40];
	api_redact_headers(in, strlen(in), tiny, sizeof(tiny));
	ck_assert_str_eq(tiny, "GET /x HTTP/1.1\r\nHost: h\r\n");
	ck_assert_uint_eq(api_redact_headers(in, strlen(in), tiny, 0), 0);
}
END_TEST

START_TEST(test_sniff)
{
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"\x89PNG\r\n\x1a\n....", 12),
			 "image/png");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"\xFF\xD8\xFF\xE0", 4),
			 "image/jpeg");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"GIF89a..", 8), "image/gif");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"GIF87a..", 8), "image/gif");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"RIFF\0\0\0\0WEBPVP8 ", 16),
			 "image/webp");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"RIFF\0\0\0\0WAVE", 12),
			 "application/octet-stream");
	const char *svg = "\xEF\xBB\xBF  <?xml version=\"1.0\"?>\n<svg xmlns=\"x\"/>";
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)svg, strlen(svg)),
			 "image/svg+xml");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"<html>", 6),
			 "application/octet-stream");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"\0\0\0\x1c"
								       "ftypavif",
						12),
			 "image/avif");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"\0\0\0\x18"
								       "ftypheic",
						12),
			 "image/heic");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"", 0),
			 "application/octet-stream");
	ck_assert_str_eq(api_sniff_content_type((const unsigned char *)"\x89PN", 3),
			 "application/octet-stream");
}
END_TEST

/* ---- multipart ------------------------------------------------------------------------ */

static int tmpfile_with(const void *data, size_t len)
{
	char path[] = "/tmp/test_api_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	return fd;
}

/* Reads the whole body in chunks of `step` bytes. */
static char *mp_read_all(struct api_mp *mp, size_t step, size_t *len)
{
	char *out = calloc(1, mp->total + 1);
	size_t off = 0;
	for (;;) {
		ssize_t n = api_mp_read_at(mp, off, out + off, step);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		off += (size_t)n;
	}
	*len = off;
	return out;
}

START_TEST(test_multipart_exact_bytes)
{
	struct api_mp mp;
	int fd = tmpfile_with("PNGDATA", 7);
	ck_assert_int_eq(api_mp_init(&mp, "XyZ"), 0);
	ck_assert_int_eq(api_mp_add_text(&mp, "id", "a/b"), 0);
	ck_assert_int_eq(api_mp_add_text(&mp, "metadata", "{\"k\":\"v\"}"), 0);
	ck_assert_int_eq(api_mp_add_text(&mp, "requireSignedURLs", "false"), 0);
	ck_assert_int_eq(api_mp_add_file(&mp, "file", "we\"ird\n\r.png", "image/png", fd, 7), 0);
	ck_assert_int_eq(api_mp_add_text(&mp, "late", "x"), -EINVAL); /* file is last */
	ck_assert_int_eq(api_mp_finish(&mp), 0);
	const char *want = "--XyZ\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\na/b\r\n"
			   "--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
			   "{\"k\":\"v\"}\r\n"
			   "--XyZ\r\nContent-Disposition: form-data; name=\"requireSignedURLs\"\r\n"
			   "\r\nfalse\r\n"
			   "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
			   "filename=\"we%22ird%0A%0D.png\"\r\nContent-Type: image/png\r\n\r\n"
			   "PNGDATA\r\n--XyZ--\r\n";
	ck_assert_uint_eq(mp.total, strlen(want));
	for (size_t step = 1; step <= 64; step += 7) {
		size_t len;
		char *got = mp_read_all(&mp, step, &len);
		ck_assert_uint_eq(len, strlen(want));
		ck_assert_mem_eq(got, want, len);
		free(got);
	}
	char ct[128];
	api_mp_content_type(&mp, ct, sizeof(ct));
	ck_assert_str_eq(ct, "multipart/form-data; boundary=XyZ");
	api_mp_release(&mp);
	close(fd);
}
END_TEST

START_TEST(test_multipart_text_only_and_errors)
{
	struct api_mp mp;
	ck_assert_int_eq(api_mp_init(&mp, "B"), 0);
	ck_assert_int_eq(api_mp_add_text(&mp, "url", "http://127.0.0.1/x.png"), 0);
	ck_assert_int_eq(api_mp_add_text(&mp, "creator", "evil --B in value"), -EINVAL);
	ck_assert_int_eq(api_mp_finish(&mp), 0);
	size_t len;
	char *got = mp_read_all(&mp, 5, &len);
	ck_assert_str_eq(got, "--B\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\n"
			      "http://127.0.0.1/x.png\r\n--B--\r\n");
	free(got);
	api_mp_release(&mp);

	ck_assert_int_eq(api_mp_init(&mp, ""), -EINVAL);
	ck_assert_int_eq(api_mp_init(&mp, "has space"), -EINVAL);
	ck_assert_int_eq(api_mp_init(&mp, NULL), 0);
	ck_assert_int_eq(strncmp(mp.boundary, "----imagesfs", 12), 0);
	ck_assert_uint_eq(strlen(mp.boundary), 12 + 32);
	struct api_mp mp2;
	ck_assert_int_eq(api_mp_init(&mp2, NULL), 0);
	ck_assert_str_ne(mp.boundary, mp2.boundary);
	/* A huge text value is refused by the head cap. */
	char *huge = malloc(100000);
	memset(huge, 'x', 99999);
	huge[99999] = '\0';
	ck_assert_int_eq(api_mp_add_text(&mp, "metadata", huge), -EINVAL);
	free(huge);
	api_mp_release(&mp);
	api_mp_release(&mp2);
}
END_TEST

START_TEST(test_multipart_file_shrinks)
{
	struct api_mp mp;
	int fd = tmpfile_with("0123456789", 10);
	ck_assert_int_eq(api_mp_init(&mp, "B"), 0);
	ck_assert_int_eq(api_mp_add_file(&mp, "file", "f", "image/png", fd, 20), 0);
	ck_assert_int_eq(api_mp_finish(&mp), 0);
	char buf[64];
	uint64_t off = mp.head.len;
	ck_assert_int_eq(api_mp_read_at(&mp, off, buf, sizeof(buf)), 10);
	ck_assert_int_eq(api_mp_read_at(&mp, off + 10, buf, sizeof(buf)), -EIO);
	api_mp_release(&mp);
	close(fd);
}
END_TEST

/* ---- retry policy, rate limiter ------------------------------------------------------- */

START_TEST(test_retry_policy)
{
	ck_assert(api_retry_should(API_IDEMPOTENT, CURLE_COULDNT_CONNECT, 0));
	ck_assert(api_retry_should(API_IDEMPOTENT, CURLE_OPERATION_TIMEDOUT, 0));
	ck_assert(api_retry_should(API_IDEMPOTENT, CURLE_RECV_ERROR, 0));
	ck_assert(api_retry_should(API_IDEMPOTENT, CURLE_GOT_NOTHING, 0));
	ck_assert(!api_retry_should(API_IDEMPOTENT, CURLE_PEER_FAILED_VERIFICATION, 0));
	ck_assert(!api_retry_should(API_IDEMPOTENT, CURLE_URL_MALFORMAT, 0));
	ck_assert(!api_retry_should(API_IDEMPOTENT, CURLE_WRITE_ERROR, 0));
	static const long yes[] = {429, 500, 502, 503, 504};
	static const long no[] = {200, 400, 401, 403, 404, 409, 413, 415, 501, 505};
	for (size_t i = 0; i < 5; i++) {
		ck_assert(api_retry_should(API_IDEMPOTENT, 0, yes[i]));
		ck_assert(api_retry_should(API_CREATE_WITH_ID, 0, yes[i]));
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		ck_assert(!api_retry_should(API_IDEMPOTENT, 0, no[i]));
		ck_assert(!api_retry_should(API_CREATE_ANON, 0, no[i]));
	}
	/* Anonymous creates: only when surely not processed. */
	ck_assert(api_retry_should(API_CREATE_ANON, CURLE_COULDNT_CONNECT, 0));
	ck_assert(api_retry_should(API_CREATE_ANON, CURLE_COULDNT_RESOLVE_HOST, 0));
	ck_assert(api_retry_should(API_CREATE_ANON, 0, 429));
	ck_assert(!api_retry_should(API_CREATE_ANON, CURLE_RECV_ERROR, 0));
	ck_assert(!api_retry_should(API_CREATE_ANON, CURLE_OPERATION_TIMEDOUT, 0));
	ck_assert(!api_retry_should(API_CREATE_ANON, 0, 503));
	ck_assert(api_retry_should(API_CREATE_WITH_ID, CURLE_RECV_ERROR, 0));
	/* A reused connection died mid-upload and libcurl's own re-send was refused. */
	ck_assert(api_retry_should(API_CREATE_WITH_ID, CURLE_SEND_FAIL_REWIND, 0));
	ck_assert(!api_retry_should(API_CREATE_ANON, CURLE_SEND_FAIL_REWIND, 0));
	ck_assert(api_retry_outcome_unknown(CURLE_SEND_FAIL_REWIND, 0));
	/* Outcome unknown: the server may have acted. */
	ck_assert(api_retry_outcome_unknown(CURLE_RECV_ERROR, 0));
	ck_assert(api_retry_outcome_unknown(CURLE_OPERATION_TIMEDOUT, 0));
	ck_assert(api_retry_outcome_unknown(0, 502));
	ck_assert(!api_retry_outcome_unknown(CURLE_COULDNT_CONNECT, 0));
	ck_assert(!api_retry_outcome_unknown(0, 429));
	ck_assert(!api_retry_outcome_unknown(0, 404));
}
END_TEST

START_TEST(test_retry_delay)
{
	/* Full jitter: within [0, min(cap, base * 2^(n-1))]. */
	ck_assert_int_eq(api_retry_delay_ms(1, -1, 0), 0);
	ck_assert_int_eq(api_retry_delay_ms(1, -1, 100), 100);
	ck_assert_int_eq(api_retry_delay_ms(1, -1, 101), 0);
	ck_assert_int_eq(api_retry_delay_ms(2, -1, 200), 200);
	ck_assert_int_eq(api_retry_delay_ms(3, -1, 400), 400);
	ck_assert_int_eq(api_retry_delay_ms(30, -1, 5000), 5000);
	ck_assert_int_eq(api_retry_delay_ms(1000, -1, 5000), 5000);
	for (int r = 1; r < 40; r++) {
		for (int k = 0; k < 50; k++) {
			long d = api_retry_delay_ms(r, -1, api_retry_rand());
			ck_assert_int_ge(d, 0);
			ck_assert_int_le(d, API_BACKOFF_CAP_MS);
		}
	}
	/* Retry-After is a floor. */
	ck_assert_int_eq(api_retry_delay_ms(1, 2000, 7), 2000);
	ck_assert_int_eq(api_retry_delay_ms(7, 1000, 4000), 4000);
	ck_assert_uint_ne(api_retry_rand(), api_retry_rand());
}
END_TEST

START_TEST(test_bucket)
{
	struct api_bucket b;
	const int64_t s = 1000000000;
	api_bucket_init(&b, 4.0, 3, 0);
	ck_assert_int_eq(api_bucket_take(&b, 0), 0);
	ck_assert_int_eq(api_bucket_take(&b, 0), 0);
	ck_assert_int_eq(api_bucket_take(&b, 0), 0);
	ck_assert_int_eq(api_bucket_take(&b, 0), s / 4);     /* 4th waits 250 ms */
	ck_assert_int_eq(api_bucket_take(&b, 0), s / 2);     /* 5th waits 500 ms */
	ck_assert_int_eq(api_bucket_take(&b, s / 2), s / 4); /* refill of 2 covered 2 debts */
	/* Long idle refills to the burst, not beyond. */
	ck_assert_int_eq(api_bucket_take(&b, 100 * s), 0);
	ck_assert_int_eq(api_bucket_take(&b, 100 * s), 0);
	ck_assert_int_eq(api_bucket_take(&b, 100 * s), 0);
	ck_assert_int_gt(api_bucket_take(&b, 100 * s), 0);
	/* Disabled. */
	api_bucket_init(&b, -1, 0, 0);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(api_bucket_take(&b, 0), 0);
	api_bucket_init(&b, 0, 0, 0);
	ck_assert_int_eq(api_bucket_take(&b, 0), 0);
}
END_TEST

/* ---- JSON parsing ---------------------------------------------------------------------- */

START_TEST(test_json_parse_limits)
{
	struct json_object *o;
	char msg[128];
	ck_assert_int_eq(api_json_parse("{\"a\":1}  \n", 10, &o, msg, sizeof(msg)), 0);
	json_object_put(o);
	ck_assert_int_eq(api_json_parse("{\"a\":1", 6, &o, msg, sizeof(msg)), -EIO);
	ck_assert_ptr_nonnull(strstr(msg, "truncated"));
	ck_assert_ptr_null(o);
	ck_assert_int_eq(api_json_parse("{\"a\":1} x", 9, &o, msg, sizeof(msg)), -EIO);
	ck_assert_int_eq(api_json_parse("", 0, &o, msg, sizeof(msg)), -EIO);
	ck_assert_int_eq(api_json_parse(NULL, 0, &o, msg, sizeof(msg)), -EIO);
	ck_assert_int_eq(api_json_parse("<html>", 6, &o, msg, sizeof(msg)), -EIO);
	ck_assert_int_eq(api_json_parse("null", 4, &o, msg, sizeof(msg)), -EIO);
	ck_assert_int_eq(api_json_parse("[1,]", 4, &o, msg, sizeof(msg)), -EIO); /* strict */
	/* Nesting past the cap is refused; just under it is accepted. */
	char deep[2 * 200 + 1];
	for (int depth = API_JSON_MAX_DEPTH - 1; depth <= 200;
	     depth += 200 - API_JSON_MAX_DEPTH + 1) {
		memset(deep, '[', (size_t)depth);
		memset(deep + depth, ']', (size_t)depth);
		int rc = api_json_parse(deep, 2 * (size_t)depth, &o, msg, sizeof(msg));
		ck_assert_int_eq(rc, depth < API_JSON_MAX_DEPTH ? 0 : -EIO);
		json_object_put(o);
	}
}
END_TEST

START_TEST(test_envelope)
{
	struct api_err e = {0};
	struct json_object *res;
	struct json_object *root = parse_or_die(OK_ENV("{\"x\":1}"));
	ck_assert_int_eq(api_envelope(root, 200, &res, &e), 0);
	ck_assert(json_object_is_type(res, json_type_object));
	json_object_put(root);

	memset(&e, 0, sizeof(e));
	root = parse_or_die(ERR_ENV(5404, "Image not found"));
	ck_assert_int_eq(api_envelope(root, 404, &res, &e), -ENOENT);
	ck_assert_int_eq(e.cf_code, 5404);
	ck_assert_int_eq(e.http_status, 404);
	ck_assert_str_eq(e.message, "Image not found");
	ck_assert_ptr_null(res);
	json_object_put(root);

	/* 200 but success:false with a code: mapped by the code. */
	memset(&e, 0, sizeof(e));
	root = parse_or_die(ERR_ENV(5409, "exists"));
	ck_assert_int_eq(api_envelope(root, 200, &res, &e), -EEXIST);
	json_object_put(root);

	/* Hostile or odd shapes. */
	static const char *const odd[] = {"[]",
					  "\"str\"",
					  "42",
					  "false",
					  "{}",
					  "{\"success\":\"true\",\"result\":{}}",
					  "{\"success\":true,\"errors\":\"x\"}"};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		memset(&e, 0, sizeof(e));
		root = parse_or_die(odd[i]);
		int rc = api_envelope(root, 200, &res, &e);
		if (i == 6)
			ck_assert_int_eq(rc, 0); /* success with an odd errors field: fine */
		else
			ck_assert_msg(rc == -EIO, "'%s' gave %d", odd[i], rc);
		json_object_put(root);
	}
	/* Error status with a non-envelope body: mapped by status. */
	memset(&e, 0, sizeof(e));
	root = parse_or_die("[1]");
	ck_assert_int_eq(api_envelope(root, 403, &res, &e), -EACCES);
	json_object_put(root);
	/* Errors entry with a wrong-typed code and an over-long message. */
	memset(&e, 0, sizeof(e));
	char big[2000];
	int n = snprintf(big, sizeof(big),
			 "{\"success\":false,\"errors\":[{\"code\":\"5404\","
			 "\"message\":\"%0900d\"}]}",
			 0);
	ck_assert_int_lt(n, (int)sizeof(big));
	root = parse_or_die(big);
	ck_assert_int_eq(api_envelope(root, 404, &res, &e), -ENOENT);
	ck_assert_int_eq(e.cf_code, 0);
	ck_assert_uint_eq(strlen(e.message), sizeof(e.message) - 1);
	json_object_put(root);
}
END_TEST

START_TEST(test_parse_image_full)
{
	struct api_image img;
	char msg[128];
	struct json_object *o = parse_or_die(IMG_JSON);
	ck_assert_int_eq(api_parse_image(o, &img, msg, sizeof(msg)), 0);
	ck_assert_str_eq(img.id, "a/b");
	ck_assert_str_eq(img.filename, "x.png");
	ck_assert_ptr_null(img.creator);
	ck_assert_str_eq(img.meta_json, "{\"k\":\"v\",\"n\":[1,2]}");
	ck_assert_int_eq(img.require_signed_urls, 0);
	ck_assert_int_eq(img.draft, 0);
	ck_assert_int_eq(img.uploaded_ms, 1643647168458LL);
	ck_assert_uint_eq(img.n_variants, 2);
	ck_assert_str_eq(img.variants[1], "https://x/thumb");
	api_image_release(&img);
	ck_assert_ptr_null(img.id);
	json_object_put(o);

	o = parse_or_die("{\"id\":\"x\",\"creator\":\"me\",\"requireSignedURLs\":true,"
			 "\"draft\":true,\"meta\":{\"url\":\"a/b\"}}");
	ck_assert_int_eq(api_parse_image(o, &img, msg, sizeof(msg)), 0);
	ck_assert_str_eq(img.creator, "me");
	ck_assert_int_eq(img.require_signed_urls, 1);
	ck_assert_int_eq(img.draft, 1);
	ck_assert_str_eq(img.meta_json, "{\"url\":\"a/b\"}"); /* no "\/" escaping */
	ck_assert_ptr_null(img.filename);
	ck_assert_int_eq(img.uploaded_ms, 0);
	ck_assert_uint_eq(img.n_variants, 0);
	api_image_release(&img);
	json_object_put(o);

	o = parse_or_die("{\"id\":\"x\",\"filename\":null,\"meta\":null,\"creator\":null,"
			 "\"uploaded\":null,\"variants\":null,\"requireSignedURLs\":null}");
	ck_assert_int_eq(api_parse_image(o, &img, msg, sizeof(msg)), 0);
	ck_assert_ptr_null(img.meta_json);
	api_image_release(&img);
	json_object_put(o);
}
END_TEST

START_TEST(test_parse_image_bad)
{
	static const char *const bad[] = {
	    "{}",
	    "{\"id\":null}",
	    "{\"id\":5}",
	    "{\"id\":\"x\",\"filename\":7}",
	    "{\"id\":\"x\",\"creator\":{}}",
	    "{\"id\":\"x\",\"meta\":\"{}\"}",
	    "{\"id\":\"x\",\"meta\":[1]}",
	    "{\"id\":\"x\",\"requireSignedURLs\":\"true\"}",
	    "{\"id\":\"x\",\"draft\":1}",
	    "{\"id\":\"x\",\"uploaded\":\"yesterday\"}",
	    "{\"id\":\"x\",\"uploaded\":12345}",
	    "{\"id\":\"x\",\"variants\":\"https://x\"}",
	    "{\"id\":\"x\",\"variants\":[\"ok\",3]}",
	    "[]",
	    "\"x\"",
	    "true",
	};
	struct api_image img;
	char msg[128];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_object *o = parse_or_die(bad[i]);
		msg[0] = '\0';
		ck_assert_msg(api_parse_image(o, &img, msg, sizeof(msg)) == -EIO, "accepted %s",
			      bad[i]);
		ck_assert_ptr_null(img.id);
		ck_assert_ptr_null(img.variants);
		ck_assert_ptr_nonnull(strstr(msg, "malformed"));
		json_object_put(o);
	}
	/* Huge strings survive intact (the body cap is the only limit). */
	size_t big = 1 << 20;
	char *text = malloc(big + 64);
	int n = snprintf(text, 64, "{\"id\":\"");
	memset(text + n, 'z', big);
	snprintf(text + n + big, 64, "\"}");
	struct json_object *o = parse_or_die(text);
	ck_assert_int_eq(api_parse_image(o, &img, msg, sizeof(msg)), 0);
	ck_assert_uint_eq(strlen(img.id), big);
	api_image_release(&img);
	json_object_put(o);
	free(text);
}
END_TEST

struct collect {
	int n;
	char ids[16][32];
	int stop_at;
};

static int collect_cb(const struct api_image *img, void *arg)
{
	struct collect *c = arg;
	if (c->n < 16)
		snprintf(c->ids[c->n], sizeof(c->ids[0]), "%s", img->id);
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 77 : 0;
}

START_TEST(test_parse_list_page)
{
	struct collect col = {0};
	char tok[64], msg[128];
	size_t n;
	struct json_object *o = parse_or_die(
	    "{\"images\":[{\"id\":\"1\"},{\"id\":\"2\"}],\"continuation_token\":\"abc\"}");
	ck_assert_int_eq(
	    api_parse_list_page(o, collect_cb, &col, &n, tok, sizeof(tok), msg, sizeof(msg)), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(col.ids[1], "2");
	ck_assert_str_eq(tok, "abc");
	json_object_put(o);

	static const char *const end[] = {"{\"images\":[],\"continuation_token\":null}",
					  "{\"images\":[]}",
					  "{\"images\":[],\"continuation_token\":\"\"}"};
	for (size_t i = 0; i < 3; i++) {
		o = parse_or_die(end[i]);
		ck_assert_int_eq(api_parse_list_page(o, collect_cb, &col, &n, tok, sizeof(tok), msg,
						     sizeof(msg)),
				 0);
		ck_assert_str_eq(tok, "");
		ck_assert_uint_eq(n, 0);
		json_object_put(o);
	}
	/* A callback's stop value is returned as is. */
	struct collect stop = {.stop_at = 1};
	o = parse_or_die("{\"images\":[{\"id\":\"1\"},{\"id\":\"2\"}]}");
	ck_assert_int_eq(
	    api_parse_list_page(o, collect_cb, &stop, &n, tok, sizeof(tok), msg, sizeof(msg)), 77);
	ck_assert_int_eq(stop.n, 1);
	json_object_put(o);

	static const char *const bad[] = {
	    "{}",
	    "{\"images\":{}}",
	    "{\"images\":null}",
	    "{\"images\":[],\"continuation_token\":5}",
	    "{\"images\":[{\"id\":\"1\"},{\"nope\":1}]}",
	    "[]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = parse_or_die(bad[i]);
		ck_assert_msg(api_parse_list_page(o, NULL, NULL, &n, tok, sizeof(tok), msg,
						  sizeof(msg)) == -EIO,
			      "accepted %s", bad[i]);
		json_object_put(o);
	}
	/* Token longer than the caller's buffer. */
	o = parse_or_die("{\"images\":[],\"continuation_token\":\"0123456789\"}");
	ck_assert_int_eq(api_parse_list_page(o, NULL, NULL, &n, tok, 5, msg, sizeof(msg)), -EIO);
	json_object_put(o);
}
END_TEST

START_TEST(test_parse_keys)
{
	struct api_key_list l;
	char msg[128];
	struct json_object *o = parse_or_die("{\"keys\":[{\"name\":\"default\",\"value\":\"Oix0=\"}"
					     ",{\"name\":\"k2\",\"value\":\"v\"}]}");
	ck_assert_int_eq(api_parse_keys(o, &l, msg, sizeof(msg)), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.keys[0].name, "default");
	ck_assert_str_eq(l.keys[0].value, "Oix0=");
	api_key_list_release(&l);
	ck_assert_uint_eq(l.n, 0);
	json_object_put(o);

	o = parse_or_die("{\"keys\":[]}");
	ck_assert_int_eq(api_parse_keys(o, &l, msg, sizeof(msg)), 0);
	ck_assert_uint_eq(l.n, 0);
	json_object_put(o);

	static const char *const bad[] = {"{}",
					  "{\"keys\":null}",
					  "{\"keys\":{}}",
					  "{\"keys\":[{\"name\":\"a\"}]}",
					  "{\"keys\":[{\"name\":\"a\",\"value\":1}]}",
					  "{\"keys\":[{\"name\":\"a\",\"value\":\"b\"},7]}",
					  "[]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = parse_or_die(bad[i]);
		ck_assert_msg(api_parse_keys(o, &l, msg, sizeof(msg)) == -EIO, "accepted %s",
			      bad[i]);
		ck_assert_ptr_null(l.keys);
		json_object_put(o);
	}
}
END_TEST

START_TEST(test_parse_variants)
{
	struct api_variant_list l;
	char msg[128];
	struct json_object *o = parse_or_die(
	    "{\"variants\":{\"public\":{\"id\":\"public\",\"options\":{\"fit\":\"scale-down\","
	    "\"width\":1366},\"neverRequireSignedURLs\":true},\"thumb\":{\"options\":{}}}}");
	ck_assert_int_eq(api_parse_variants(o, &l, msg, sizeof(msg)), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.v[0].id, "public");
	ck_assert_str_eq(l.v[0].options_json, "{\"fit\":\"scale-down\",\"width\":1366}");
	ck_assert_int_eq(l.v[0].never_require_signed_urls, 1);
	ck_assert_str_eq(l.v[1].id, "thumb"); /* from the map key */
	ck_assert_int_eq(l.v[1].never_require_signed_urls, 0);
	api_variant_list_release(&l);
	json_object_put(o);

	o = parse_or_die("{\"variants\":[{\"id\":\"a\",\"options\":{\"width\":1}}]}");
	ck_assert_int_eq(api_parse_variants(o, &l, msg, sizeof(msg)), 0);
	ck_assert_uint_eq(l.n, 1);
	api_variant_list_release(&l);
	json_object_put(o);

	static const char *const bad[] = {"{}",
					  "{\"variants\":null}",
					  "{\"variants\":\"x\"}",
					  "{\"variants\":{\"a\":{}}}",
					  "{\"variants\":{\"a\":{\"options\":[]}}}",
					  "{\"variants\":{\"a\":{\"options\":{}},\"b\":5}}",
					  "{\"variants\":[{\"options\":{}}]}",
					  "{\"variants\":{\"a\":{\"options\":{},"
					  "\"neverRequireSignedURLs\":\"yes\"}}}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = parse_or_die(bad[i]);
		ck_assert_msg(api_parse_variants(o, &l, msg, sizeof(msg)) == -EIO, "accepted %s",
			      bad[i]);
		ck_assert_ptr_null(l.v);
		json_object_put(o);
	}
	struct api_variant v;
	o = parse_or_die("{\"id\":\"hero\",\"options\":{\"width\":2}}");
	ck_assert_int_eq(api_parse_variant(o, NULL, &v, msg, sizeof(msg)), 0);
	ck_assert_str_eq(v.id, "hero");
	api_variant_release(&v);
	json_object_put(o);
}
END_TEST

START_TEST(test_parse_stats)
{
	struct api_stats s = {0};
	char msg[128];
	struct json_object *o = parse_or_die("{\"count\":{\"allowed\":100000,\"current\":1000}}");
	ck_assert_int_eq(api_parse_stats(o, &s, msg, sizeof(msg)), 0);
	ck_assert_int_eq(s.allowed, 100000);
	ck_assert_int_eq(s.current, 1000);
	json_object_put(o);
	o = parse_or_die("{\"count\":{\"allowed\":1e5,\"current\":0}}");
	ck_assert_int_eq(api_parse_stats(o, &s, msg, sizeof(msg)), 0);
	ck_assert_int_eq(s.allowed, 100000);
	json_object_put(o);
	static const char *const bad[] = {"{}",
					  "{\"count\":[]}",
					  "{\"count\":{\"allowed\":1}}",
					  "{\"count\":{\"allowed\":\"1\",\"current\":1}}",
					  "{\"count\":{\"allowed\":1.5,\"current\":1}}",
					  "{\"count\":{\"allowed\":1e300,\"current\":1}}",
					  "7"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s.allowed = -42;
		o = parse_or_die(bad[i]);
		ck_assert_msg(api_parse_stats(o, &s, msg, sizeof(msg)) == -EIO, "accepted %s",
			      bad[i]);
		ck_assert_int_eq(s.allowed, -42); /* untouched on failure */
		json_object_put(o);
	}
}
END_TEST

/* test_api_http.c */
void add_http_tests(TCase *tc);
void add_client_tests(TCase *tc);

static Suite *api_suite(void)
{
	Suite *s = suite_create("api");
	TCase *pure = tcase_create("pure");
	tcase_add_test(pure, test_errno_map_table);
	tcase_add_test(pure, test_err_str);
	tcase_add_test(pure, test_custom_id_valid);
	tcase_add_test(pure, test_escape);
	tcase_add_test(pure, test_buf_caps);
	tcase_add_test(pure, test_rfc3339);
	tcase_add_test(pure, test_redact_headers);
	tcase_add_test(pure, test_sniff);
	tcase_add_test(pure, test_multipart_exact_bytes);
	tcase_add_test(pure, test_multipart_text_only_and_errors);
	tcase_add_test(pure, test_multipart_file_shrinks);
	tcase_add_test(pure, test_retry_policy);
	tcase_add_test(pure, test_retry_delay);
	tcase_add_test(pure, test_bucket);
	tcase_add_test(pure, test_json_parse_limits);
	tcase_add_test(pure, test_envelope);
	tcase_add_test(pure, test_parse_image_full);
	tcase_add_test(pure, test_parse_image_bad);
	tcase_add_test(pure, test_parse_list_page);
	tcase_add_test(pure, test_parse_keys);
	tcase_add_test(pure, test_parse_variants);
	tcase_add_test(pure, test_parse_stats);
	suite_add_tcase(s, pure);
	TCase *http = tcase_create("http");
	tcase_set_timeout(http, 60);
	add_http_tests(http);
	suite_add_tcase(s, http);
	TCase *client = tcase_create("client");
	add_client_tests(client);
	suite_add_tcase(s, client);
	return s;
}

int main(void)
{
	if (api_global_init() != 0)
		return 1;
	SRunner *sr = srunner_create(api_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	api_global_cleanup();
	return failed ? 1 : 0;
}

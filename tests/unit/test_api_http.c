/*
 * test_api_http.c - the HTTP layer of the API client against fake_http.c: URLs and
 * escaping, auth headers, request bodies, retries (503, 429 + Retry-After, dropped
 * connections), DELETE/upload recovery after a lost response, caps, timeouts, paging;
 * client configuration checks and argument errors that never reach the network.
 */
#include "api_internal.h"
#include "fake_http.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void add_http_tests(TCase *tc);
void add_client_tests(TCase *tc);

#define OK_ENV(result) "{\"result\":" result ",\"success\":true,\"errors\":[],\"messages\":[]}"
#define ERR_ENV(code, msg)                                                                         \
	"{\"result\":null,\"success\":false,\"errors\":[{\"code\":" #code ",\"message\":\"" msg    \
	"\"}],\"messages\":[]}"
#define IMG(id, fname) "{\"id\":\"" id "\",\"filename\":\"" fname "\",\"variants\":[]}"
#define PNG_BYTES "\x89PNG\r\n\x1a\nfake-png-body"

static struct fake_http F;

static void fake_setup(void)
{
	memset(&F, 0, sizeof(F));
}

static void start(void)
{
	ck_assert_int_eq(fake_http_start(&F), 0);
}

static struct api_client *client_ex(int max_attempts, long req_timeout_ms, double rate, int burst)
{
	struct api_config cfg = {.base_url = F.base_url,
				 .account_id = "acc",
				 .token = "sekret",
				 .max_attempts = max_attempts,
				 .retry_budget_ms = 20000,
				 .rate_per_sec = rate,
				 .rate_burst = burst,
				 .connect_timeout_ms = 2000,
				 .request_timeout_ms = req_timeout_ms,
				 .low_speed_time_s = 5};
	struct api_client *c = NULL;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	return c;
}

static struct api_client *client(int max_attempts)
{
	return client_ex(max_attempts, 5000, -1, 0);
}

static long ms_since(int64_t t0)
{
	return (long)((api_now_ns() - t0) / 1000000);
}

static int tmpfd(const void *data, size_t len)
{
	char path[] = "/tmp/test_api_http_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	if (len)
		ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	return fd;
}

static char *fd_contents(int fd, size_t *len)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	char *p = calloc(1, (size_t)st.st_size + 1);
	ck_assert_int_eq(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	*len = (size_t)st.st_size;
	return p;
}

static void assert_head_starts(int i, const char *prefix)
{
	ck_assert_msg(strncmp(F.reqs[i].head, prefix, strlen(prefix)) == 0,
		      "request %d is '%.120s', want '%s'", i, F.reqs[i].head, prefix);
}

START_TEST(test_get_escapes_id_and_sends_token)
{
	struct api_image img;
	struct api_err e;
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("a/b c/\xC3\xA9", "x.png")));
	start();
	struct api_client *c = client(1);
	ck_assert_int_eq(api_image_get(c, "a/b c/\xC3\xA9", &img, &e), 0);
	ck_assert_str_eq(img.id, "a/b c/\xC3\xA9");
	ck_assert_int_eq(e.http_status, 0); /* zeroed on success */
	assert_head_starts(0,
			   "GET /client/v4/accounts/acc/images/v1/a%2Fb%20c%2F%C3%A9 HTTP/1.1\r\n");
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "\r\nAuthorization: Bearer sekret\r\n"));
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "\r\nAccept: application/json\r\n"));
	api_image_release(&img);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_email_key_auth_headers)
{
	struct api_stats st;
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":10,\"current\":3}}"));
	start();
	struct api_config cfg = {.base_url = F.base_url,
				 .account_id = "acc",
				 .auth_email = "me@example.com",
				 .auth_key = "g10bal"};
	struct api_client *c;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	ck_assert_int_eq(api_stats_get(c, &st, NULL), 0);
	ck_assert_int_eq(st.current, 3);
	assert_head_starts(0, "GET /client/v4/accounts/acc/images/v1/stats HTTP/1.1\r\n");
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "\r\nX-Auth-Email: me@example.com\r\n"));
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "\r\nX-Auth-Key: g10bal\r\n"));
	ck_assert_ptr_null(strcasestr(F.reqs[0].head, "Authorization:"));
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_retry_503_then_ok)
{
	struct api_image img;
	struct api_counters k;
	fake_add_reply(&F, 503, NULL, ERR_ENV(5503, "Server Unavailable"));
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("x", "x.png")));
	start();
	struct api_client *c = client(3);
	ck_assert_int_eq(api_image_get(c, "x", &img, NULL), 0);
	api_counters_get(c, &k);
	ck_assert_uint_eq(k.requests, 2);
	ck_assert_uint_eq(k.retries, 1);
	ck_assert_int_eq(fake_http_nreqs(&F), 2);
	api_image_release(&img);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_retry_after_is_honoured)
{
	struct api_stats st;
	fake_add_reply(&F, 429, "Retry-After: 1\r\n", ERR_ENV(971, "Please wait"));
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":1,\"current\":0}}"));
	start();
	struct api_client *c = client(3);
	int64_t t0 = api_now_ns();
	ck_assert_int_eq(api_stats_get(c, &st, NULL), 0);
	ck_assert_int_ge(ms_since(t0), 950);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_429_exhausted_is_eagain)
{
	struct api_stats st;
	struct api_err e;
	char buf[300];
	for (int i = 0; i < 3; i++)
		fake_add_reply(&F, 429, NULL, ERR_ENV(971, "Please wait"));
	start();
	struct api_client *c = client(3);
	ck_assert_int_eq(api_stats_get(c, &st, &e), -EAGAIN);
	ck_assert_int_eq(e.http_status, 429);
	ck_assert_int_eq(e.cf_code, 971);
	ck_assert_int_eq(e.attempts, 3);
	ck_assert_str_eq(api_err_str(&e, buf, sizeof(buf)),
			 "HTTP 429, code 971: Please wait (after 3 attempts)");
	ck_assert_int_eq(st.allowed, 0);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_500_exhausted_is_eio_and_404_not_retried)
{
	struct api_image img;
	struct api_err e;
	fake_add_reply(&F, 500, NULL, ERR_ENV(5500, "Internal Server Error"));
	fake_add_reply(&F, 500, NULL, ERR_ENV(5500, "Internal Server Error"));
	fake_add_reply(&F, 404, NULL, ERR_ENV(5404, "Image not found"));
	start();
	struct api_client *c = client(2);
	ck_assert_int_eq(api_image_get(c, "x", &img, &e), -EIO);
	ck_assert_int_eq(e.attempts, 2);
	ck_assert_int_eq(api_image_get(c, "x", &img, &e), -ENOENT);
	ck_assert_int_eq(e.attempts, 1);
	ck_assert_int_eq(e.cf_code, 5404);
	ck_assert_str_eq(e.message, "Image not found");
	ck_assert_ptr_null(img.id);
	ck_assert_int_eq(fake_http_nreqs(&F), 3);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_delete_lost_response_then_404_is_success)
{
	struct api_err e;
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 404, NULL, ERR_ENV(5404, "Image not found"));
	fake_add_reply(&F, 404, NULL, ERR_ENV(5404, "Image not found"));
	start();
	struct api_client *c = client(3);
	ck_assert_int_eq(api_image_delete(c, "x/y", &e), 0);
	assert_head_starts(0, "DELETE /client/v4/accounts/acc/images/v1/x%2Fy HTTP/1.1\r\n");
	ck_assert_int_eq(fake_http_nreqs(&F), 2);
	/* Without an earlier uncertain attempt, 404 is an error. */
	ck_assert_int_eq(api_image_delete(c, "x/y", &e), -ENOENT);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

static void upload_png(struct api_client *c, const char *id, int want_rc, const char *want_id)
{
	struct api_image img;
	struct api_err e;
	int fd = tmpfd(PNG_BYTES, sizeof(PNG_BYTES) - 1);
	struct api_upload up = {.id = id, .fd = fd, .filename = "f.png", .require_signed_urls = -1};
	ck_assert_int_eq(api_image_upload(c, &up, &img, &e), want_rc);
	if (want_id)
		ck_assert_str_eq(img.id, want_id);
	else
		ck_assert_ptr_null(img.id);
	api_image_release(&img);
	close(fd);
}

START_TEST(test_upload_with_id_recovers_lost_response)
{
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 409, NULL, ERR_ENV(5409, "Resource already exists."));
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("my/id", "f.png")));
	fake_add_reply(&F, 200, "Content-Type: image/png\r\n", PNG_BYTES);
	start();
	struct api_client *c = client(3);
	upload_png(c, "my/id", 0, "my/id");
	ck_assert_int_eq(fake_http_nreqs(&F), 4);
	assert_head_starts(0, "POST /client/v4/accounts/acc/images/v1 HTTP/1.1\r\n");
	ck_assert_ptr_nonnull(
	    strstr(F.reqs[0].head, "Content-Type: multipart/form-data; boundary=----imagesfs"));
	const char *b = F.reqs[0].body;
	ck_assert_ptr_nonnull(
	    strstr(b, "Content-Disposition: form-data; name=\"id\"\r\n\r\nmy/id\r\n"));
	ck_assert_ptr_nonnull(strstr(b, "name=\"file\"; filename=\"f.png\"\r\n"
					"Content-Type: image/png\r\n\r\n" PNG_BYTES "\r\n--"));
	ck_assert_ptr_null(strstr(b, "requireSignedURLs"));
	assert_head_starts(2, "GET /client/v4/accounts/acc/images/v1/my%2Fid HTTP/1.1\r\n");
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

/* Every response lost (no 409 ever seen): the stored image is still recognised by a GET and
 * a byte comparison, and reported as uploaded; different bytes are not ours. */
/* Only the LAST attempt's outcome is unknown (earlier ones were refused with 429): the upload
 * may still have landed, so it is looked for before failing. */
START_TEST(test_upload_with_id_last_attempt_lost)
{
	fake_add_reply(&F, 429, NULL, ERR_ENV(971, "Please wait"));
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("my/id", "f.png")));
	fake_add_reply(&F, 200, "Content-Type: image/png\r\n", PNG_BYTES);
	start();
	struct api_client *c = client(2);
	upload_png(c, "my/id", 0, "my/id");
	ck_assert_int_eq(fake_http_nreqs(&F), 4);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_upload_with_id_all_responses_lost)
{
	fake_add_action(&F, FAKE_DROP);
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("my/id", "f.png")));
	fake_add_reply(&F, 200, "Content-Type: image/png\r\n", PNG_BYTES);
	fake_add_action(&F, FAKE_DROP);
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("my/id", "f.png")));
	fake_add_reply(&F, 200, "Content-Type: image/png\r\n", "\x89PNG\r\n\x1a\nother-bytes!!");
	start();
	struct api_client *c = client(2);
	upload_png(c, "my/id", 0, "my/id");
	ck_assert_int_eq(fake_http_nreqs(&F), 4);
	assert_head_starts(3, "GET /client/v4/accounts/acc/images/v1/my%2Fid/blob HTTP/1.1\r\n");
	upload_png(c, "my/id", -EIO, NULL);
	ck_assert_int_eq(fake_http_nreqs(&F), 8);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_upload_with_id_foreign_duplicate_is_eexist)
{
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 409, NULL, ERR_ENV(5409, "Resource already exists."));
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("my/id", "someone-else.png")));
	fake_add_reply(&F, 409, NULL, ERR_ENV(5409, "Resource already exists."));
	start();
	struct api_client *c = client(3);
	upload_png(c, "my/id", -EEXIST, NULL);
	ck_assert_int_eq(fake_http_nreqs(&F), 3);
	/* A plain duplicate (no uncertain attempt before) is EEXIST without a GET. */
	upload_png(c, "my/id", -EEXIST, NULL);
	ck_assert_int_eq(fake_http_nreqs(&F), 4);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_upload_anonymous_not_retried_after_send)
{
	struct api_err e;
	struct api_image img;
	fake_add_action(&F, FAKE_DROP);
	fake_add_reply(&F, 429, NULL, ERR_ENV(971, "Please wait"));
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("gen-1", "f.png")));
	start();
	struct api_client *c = client(3);
	int fd = tmpfd(PNG_BYTES, sizeof(PNG_BYTES) - 1);
	struct api_upload up = {.fd = fd, .filename = "f.png", .require_signed_urls = -1};
	ck_assert_int_eq(api_image_upload(c, &up, &img, &e), -EIO);
	ck_assert_int_eq(e.curl_code, CURLE_GOT_NOTHING);
	ck_assert_int_eq(fake_http_nreqs(&F), 1);
	/* 429 is refused before processing: safe to repeat. */
	ck_assert_int_eq(api_image_upload(c, &up, &img, &e), 0);
	ck_assert_str_eq(img.id, "gen-1");
	ck_assert_int_eq(fake_http_nreqs(&F), 3);
	api_image_release(&img);
	close(fd);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_upload_by_url_fields)
{
	struct api_image img;
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("gen-2", "x.png")));
	start();
	struct api_client *c = client(1);
	struct api_upload up = {.fd = -1,
				.url = "http://127.0.0.1:9/x.png",
				.creator = "bob",
				.metadata_json = "{\"a\":1}",
				.require_signed_urls = 1};
	ck_assert_int_eq(api_image_upload(c, &up, &img, NULL), 0);
	const char *b = F.reqs[0].body;
	ck_assert_ptr_nonnull(strstr(b, "name=\"url\"\r\n\r\nhttp://127.0.0.1:9/x.png\r\n"));
	ck_assert_ptr_nonnull(strstr(b, "name=\"creator\"\r\n\r\nbob\r\n"));
	ck_assert_ptr_nonnull(strstr(b, "name=\"metadata\"\r\n\r\n{\"a\":1}\r\n"));
	ck_assert_ptr_nonnull(strstr(b, "name=\"requireSignedURLs\"\r\n\r\ntrue\r\n"));
	ck_assert_ptr_null(strstr(b, "name=\"file\""));
	ck_assert_ptr_null(strstr(b, "name=\"id\""));
	api_image_release(&img);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_blob_streams_to_fd)
{
	const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 10\r\n\r\n"
			  "0123456789";
	uint64_t size = 0;
	char ct[64] = "";
	size_t len;
	fake_add_raw(&F, ok, sizeof(ok) - 1);
	start();
	struct api_client *c = client(1);
	int fd = tmpfd(NULL, 0);
	ck_assert_int_eq(api_image_blob(c, "p/q", fd, 0, &size, ct, sizeof(ct), NULL), 0);
	ck_assert_uint_eq(size, 10);
	ck_assert_str_eq(ct, "image/png");
	char *got = fd_contents(fd, &len);
	ck_assert_str_eq(got, "0123456789");
	free(got);
	assert_head_starts(0, "GET /client/v4/accounts/acc/images/v1/p%2Fq/blob HTTP/1.1\r\n");
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "Accept: image/*"));
	close(fd);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_blob_short_body_retried_from_start_offset)
{
	const char shortb[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234";
	const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
	uint64_t size = 0;
	size_t len;
	struct api_err e;
	fake_add_raw_close(&F, shortb, sizeof(shortb) - 1);
	fake_add_raw(&F, ok, sizeof(ok) - 1);
	fake_add_raw_close(&F, shortb, sizeof(shortb) - 1);
	fake_add_raw_close(&F, shortb, sizeof(shortb) - 1);
	start();
	struct api_client *c = client(2);
	int fd = tmpfd("HDR", 3); /* the blob goes after what is already there */
	ck_assert_int_eq(api_image_blob(c, "x", fd, 0, &size, NULL, 0, NULL), 0);
	ck_assert_uint_eq(size, 10);
	char *got = fd_contents(fd, &len);
	ck_assert_str_eq(got, "HDR0123456789");
	free(got);
	close(fd);
	/* Short twice: EIO, never a silent truncation. */
	fd = tmpfd(NULL, 0);
	size = 77;
	ck_assert_int_eq(api_image_blob(c, "x", fd, 0, &size, NULL, 0, &e), -EIO);
	ck_assert_int_eq(e.curl_code, CURLE_PARTIAL_FILE);
	ck_assert_int_eq(e.attempts, 2);
	ck_assert_uint_eq(size, 77);
	close(fd);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_blob_caps_and_errors)
{
	const char ten[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
	const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n";
	struct api_err e;
	size_t len;
	fake_add_raw_close(&F, ten, sizeof(ten) - 1);
	fake_add_raw_close(&F, chunked, sizeof(chunked) - 1);
	fake_add_reply(&F, 404, NULL, ERR_ENV(5404, "Image not found"));
	start();
	struct api_client *c = client(3);
	int fd = tmpfd(NULL, 0);
	ck_assert_int_eq(api_image_blob(c, "x", fd, 5, NULL, NULL, 0, &e), -EFBIG);
	ck_assert_ptr_nonnull(strstr(e.message, "cap"));
	ck_assert_int_eq(api_image_blob(c, "x", fd, 5, NULL, NULL, 0, &e), -EFBIG);
	ck_assert_int_eq(e.attempts, 1);
	char *got = fd_contents(fd, &len);
	ck_assert_uint_le(len, 5);
	free(got);
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	ck_assert_int_eq(api_image_blob(c, "x", fd, 0, NULL, NULL, 0, &e), -ENOENT);
	ck_assert_int_eq(e.cf_code, 5404);
	got = fd_contents(fd, &len);
	ck_assert_uint_eq(len, 0); /* the error body never reaches the fd */
	free(got);
	close(fd);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_json_body_cap_and_garbage)
{
	struct api_stats st;
	struct api_err e;
	size_t big = API_MAX_JSON_SMALL + 10;
	char *body = malloc(big + 1);
	memset(body, ' ', big);
	body[big] = '\0';
	body[0] = '{';
	body[big - 1] = '}';
	fake_add_reply(&F, 200, NULL, body);
	free(body);
	fake_add_reply(&F, 200, NULL, "{\"result\":{\"count\":");
	fake_add_reply(&F, 200, NULL, "{\"result\":{\"count\":{}},\"success\":true}");
	fake_add_reply(&F, 502, NULL, "<html>bad gateway</html>");
	fake_add_reply(&F, 502, NULL, "<html>bad gateway</html>");
	start();
	struct api_client *c = client(2);
	ck_assert_int_eq(api_stats_get(c, &st, &e), -EIO);
	ck_assert_ptr_nonnull(strstr(e.message, "cap"));
	ck_assert_int_eq(api_stats_get(c, &st, &e), -EIO);
	ck_assert_ptr_nonnull(strstr(e.message, "invalid JSON"));
	ck_assert_int_eq(api_stats_get(c, &st, &e), -EIO);
	ck_assert_ptr_nonnull(strstr(e.message, "allowed"));
	ck_assert_int_eq(e.http_status, 200);
	ck_assert_int_eq(api_stats_get(c, &st, &e), -EAGAIN);
	ck_assert_int_eq(e.http_status, 502);
	ck_assert_ptr_nonnull(strstr(e.message, "without an error envelope"));
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_hung_server_times_out)
{
	struct api_stats st;
	struct api_err e;
	fake_add_action(&F, FAKE_HANG);
	start();
	struct api_client *c = client_ex(1, 700, -1, 0);
	int64_t t0 = api_now_ns();
	ck_assert_int_eq(api_stats_get(c, &st, &e), -ETIMEDOUT);
	ck_assert_int_eq(e.curl_code, CURLE_OPERATION_TIMEDOUT);
	ck_assert_int_lt(ms_since(t0), 3000);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_refused_connection_fails_fast)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s); /* nothing listens there now */
	snprintf(F.base_url, sizeof(F.base_url), "http://127.0.0.1:%d/client/v4",
		 ntohs(sa.sin_port));
	struct api_client *c = client(3);
	struct api_image img;
	struct api_err e;
	int64_t t0 = api_now_ns();
	ck_assert_int_eq(api_image_get(c, "x", &img, &e), -EIO);
	ck_assert_int_eq(e.curl_code, CURLE_COULDNT_CONNECT);
	ck_assert_int_eq(e.http_status, 0);
	ck_assert_int_eq(e.attempts, 3);
	ck_assert_int_lt(ms_since(t0), 5000);
	api_client_free(c);
}
END_TEST

struct count_ctx {
	int n;
	int stop_at;
};

static int count_cb(const struct api_image *img, void *arg)
{
	struct count_ctx *cc = arg;
	ck_assert_ptr_nonnull(img->id);
	cc->n++;
	return cc->stop_at && cc->n >= cc->stop_at ? 77 : 0;
}

START_TEST(test_list_v2_follows_tokens)
{
	struct count_ctx cc = {0};
	int nreq = 0;
	fake_add_reply(&F, 200, NULL,
		       OK_ENV("{\"images\":[" IMG("1", "a") "," IMG(
			   "2", "b") "],\"continuation_token\":\"t 1/x\"}"));
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"images\":[],\"continuation_token\":\"t2\"}"));
	fake_add_reply(&F, 200, NULL,
		       OK_ENV("{\"images\":[" IMG("3", "c") "],\"continuation_token\":null}"));
	start();
	struct api_client *c = client(1);
	ck_assert_int_eq(api_images_list(c, NULL, count_cb, &cc, &nreq, NULL), 0);
	ck_assert_int_eq(cc.n, 3);
	ck_assert_int_eq(nreq, 3);
	assert_head_starts(0, "GET /client/v4/accounts/acc/images/v2?per_page=10000 HTTP/1.1");
	assert_head_starts(
	    1,
	    "GET /client/v4/accounts/acc/images/v2?per_page=10000&continuation_token=t%201%2Fx ");
	assert_head_starts(
	    2, "GET /client/v4/accounts/acc/images/v2?per_page=10000&continuation_token=t2 ");
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_list_v2_options_stop_and_bad_tokens)
{
	struct count_ctx cc = {.stop_at = 1};
	struct api_err e;
	int nreq = 0;
	const char *page =
	    OK_ENV("{\"images\":[" IMG("1", "a") "],\"continuation_token\":\"same\"}");
	for (int i = 0; i < 4; i++)
		fake_add_reply(&F, 200, NULL, page);
	start();
	struct api_client *c = client(1);
	struct api_list_opts o = {.per_page = 10, .creator = "", .sort_asc = 1};
	ck_assert_int_eq(api_images_list(c, &o, count_cb, &cc, &nreq, &e), 77);
	ck_assert_int_eq(nreq, 1);
	assert_head_starts(0, "GET /client/v4/accounts/acc/images/v2?per_page=10&sort_order=asc"
			      "&creator= HTTP/1.1");
	/* max_pages stops early. */
	cc = (struct count_ctx){0};
	struct api_list_opts one = {.max_pages = 1};
	ck_assert_int_eq(api_images_list(c, &one, count_cb, &cc, &nreq, &e), 0);
	ck_assert_int_eq(nreq, 1);
	/* A token that does not advance is an error, not a loop. */
	ck_assert_int_eq(api_images_list(c, NULL, count_cb, &cc, &nreq, &e), -EIO);
	ck_assert_ptr_nonnull(strstr(e.message, "did not advance"));
	ck_assert_int_eq(nreq, 2);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_list_v1_page)
{
	struct count_ctx cc = {0};
	size_t n = 0;
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"images\":[" IMG("1", "a") "," IMG("2", "b") "]}"));
	start();
	struct api_client *c = client(1);
	ck_assert_int_eq(api_images_list_v1(c, 2, 50, "a b", count_cb, &cc, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(cc.n, 2);
	assert_head_starts(
	    0, "GET /client/v4/accounts/acc/images/v1?page=2&per_page=50&creator=a%20b ");
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_rate_limiter_throttles)
{
	struct api_counters k;
	for (int i = 0; i < 4; i++)
		fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":1,\"current\":0}}"));
	start();
	struct api_client *c = client_ex(1, 5000, 10.0, 1);
	struct api_stats st;
	int64_t t0 = api_now_ns();
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(api_stats_get(c, &st, NULL), 0);
	ck_assert_int_ge(ms_since(t0), 250); /* 3 waits of ~100 ms */
	api_counters_get(c, &k);
	ck_assert_uint_ge(k.throttled_ms, 250);
	ck_assert_uint_eq(k.requests, 4);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

/* Time a call waits in the client's limiter is not charged to its retry budget (issue 8: a
 * throttled call must keep its retries). Budget 300 ms, limiter 2/s: each attempt of the
 * second call waits ~500 ms for the limiter, so a budget that counted it would refuse the
 * retry after the 503. */
START_TEST(test_limiter_wait_not_charged_to_retry_budget)
{
	struct api_counters k;
	struct api_stats st;
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":1,\"current\":0}}"));
	fake_add_reply(&F, 503, NULL, ERR_ENV(5503, "Server Unavailable"));
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":1,\"current\":0}}"));
	start();
	struct api_config cfg = {.base_url = F.base_url,
				 .account_id = "acc",
				 .token = "sekret",
				 .max_attempts = 3,
				 .retry_budget_ms = 300,
				 .rate_per_sec = 2.0,
				 .rate_burst = 1,
				 .connect_timeout_ms = 2000,
				 .request_timeout_ms = 5000,
				 .low_speed_time_s = 5};
	struct api_client *c = NULL;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	ck_assert_int_eq(api_stats_get(c, &st, NULL), 0); /* takes the burst */
	ck_assert_int_eq(api_stats_get(c, &st, NULL), 0); /* 503, retried after the wait */
	api_counters_get(c, &k);
	ck_assert_uint_eq(k.requests, 3);
	ck_assert_uint_eq(k.retries, 1);
	ck_assert_uint_ge(k.throttled_ms, 900); /* both attempts of the second call waited */
	ck_assert_int_eq(fake_http_nreqs(&F), 3);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

START_TEST(test_keys_edit_variants_requests)
{
	struct api_key_list kl;
	struct api_image img;
	struct api_variant v;
	const char *keys = OK_ENV("{\"keys\":[{\"name\":\"default\",\"value\":\"v0\"},"
				  "{\"name\":\"k1\",\"value\":\"v1\"}]}");
	fake_add_reply(&F, 200, NULL, keys);
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("x", "x.png")));
	fake_add_reply(&F, 200, NULL,
		       OK_ENV("{\"variant\":{\"id\":\"v1\",\"options\":{\"width\":10},"
			      "\"neverRequireSignedURLs\":true}}"));
	fake_add_reply(&F, 200, NULL, OK_ENV("{}"));
	start();
	struct api_client *c = client(1);
	ck_assert_int_eq(api_key_put(c, "k1", &kl, NULL), 0);
	ck_assert_uint_eq(kl.n, 2);
	api_key_list_release(&kl);
	assert_head_starts(0, "PUT /client/v4/accounts/acc/images/v1/keys/k1 HTTP/1.1\r\n");
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "\r\nContent-Length: 0\r\n"));

	struct api_image_patch p = {
	    .metadata_json = "{\"a\": 1}", .creator = "me", .require_signed_urls = 0};
	ck_assert_int_eq(api_image_edit(c, "x", &p, &img, NULL), 0);
	api_image_release(&img);
	assert_head_starts(1, "PATCH /client/v4/accounts/acc/images/v1/x HTTP/1.1\r\n");
	ck_assert_ptr_nonnull(strstr(F.reqs[1].head, "Content-Type: application/json"));
	ck_assert_str_eq(F.reqs[1].body,
			 "{\"metadata\":{\"a\":1},\"creator\":\"me\",\"requireSignedURLs\":false}");

	ck_assert_int_eq(api_variant_create(c, "v1", "{\"width\":10}", 1, &v, NULL), 0);
	ck_assert_str_eq(v.options_json, "{\"width\":10}");
	ck_assert_int_eq(v.never_require_signed_urls, 1);
	api_variant_release(&v);
	assert_head_starts(2, "POST /client/v4/accounts/acc/images/v1/variants HTTP/1.1\r\n");
	ck_assert_str_eq(
	    F.reqs[2].body,
	    "{\"id\":\"v1\",\"options\":{\"width\":10},\"neverRequireSignedURLs\":true}");
	ck_assert_int_eq(api_variant_delete(c, "v1", NULL), 0);
	assert_head_starts(3, "DELETE /client/v4/accounts/acc/images/v1/variants/v1 HTTP/1.1\r\n");
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

/* Verbose traces go to stderr with the credentials redacted. */
START_TEST(test_verbose_trace_redacts_secrets)
{
	struct api_stats st;
	size_t len;
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":1,\"current\":0}}"));
	start();
	struct api_config cfg = {.base_url = F.base_url,
				 .account_id = "acc",
				 .token = "sekret-token-value",
				 .verbose = 1};
	struct api_client *c;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	int log = tmpfd(NULL, 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(log, 2);
	int rc = api_stats_get(c, &st, NULL);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ck_assert_int_eq(rc, 0);
	char *text = fd_contents(log, &len);
	ck_assert_ptr_nonnull(strstr(text, "Authorization: [redacted]"));
	ck_assert_ptr_null(strstr(text, "sekret-token-value"));
	free(text);
	close(log);
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

/* ---- client config ------------------------------------------------------------------ */

START_TEST(test_client_config)
{
	struct api_client *c = (void *)1;
	struct api_config cfg = {
	    .base_url = "http://127.0.0.1:1/client/v4", .account_id = "acc", .token = "t"};
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	ck_assert_str_eq(c->images_url, "http://127.0.0.1:1/client/v4/accounts/acc/images");
	ck_assert_str_eq(c->auth_hdr[0], "Authorization: Bearer t");
	ck_assert_ptr_null(c->auth_hdr[1]);
	ck_assert_int_eq(c->max_attempts, API_DEF_MAX_ATTEMPTS);
	ck_assert(c->bucket.enabled);
	ck_assert(c->bucket.rate == API_DEF_RATE_PER_SEC);
	ck_assert(c->bucket.burst == API_DEF_RATE_BURST);
	/* The default bucket never exceeds Cloudflare's 1200 requests in any 300 s. */
	ck_assert(c->bucket.burst + c->bucket.rate * 300 <= 1200.0 + 1e-9);
	api_client_free(c);

	/* A chosen rate without a burst gets one second's worth, not the default burst. */
	cfg.rate_per_sec = 3;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	ck_assert(c->bucket.rate == 3);
	ck_assert(c->bucket.burst == 3);
	api_client_free(c);
	cfg.rate_per_sec = 0.5;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	ck_assert(c->bucket.burst == 1);
	api_client_free(c);
	cfg.rate_per_sec = 0;

	cfg.base_url = "https://api.example/client/v4//";
	cfg.token = NULL;
	cfg.auth_email = "a@b.c";
	cfg.auth_key = "k";
	cfg.rate_per_sec = -1;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	ck_assert_str_eq(c->images_url, "https://api.example/client/v4/accounts/acc/images");
	ck_assert_str_eq(c->auth_hdr[0], "X-Auth-Email: a@b.c");
	ck_assert_str_eq(c->auth_hdr[1], "X-Auth-Key: k");
	ck_assert(!c->bucket.enabled);
	api_client_free(c);

	struct api_config bad[] = {
	    {.base_url = "ftp://x", .account_id = "a", .token = "t"},
	    {.base_url = NULL, .account_id = "a", .token = "t"},
	    {.base_url = "http://x", .account_id = "", .token = "t"},
	    {.base_url = "http://x",
	     .account_id = "012345678901234567890123456789012",
	     .token = "t"},
	    {.base_url = "http://x", .account_id = "a"},
	    {.base_url = "http://x",
	     .account_id = "a",
	     .token = "t",
	     .auth_email = "e",
	     .auth_key = "k"},
	    {.base_url = "http://x", .account_id = "a", .auth_email = "e"},
	    {.base_url = "http://x", .account_id = "a", .token = "t\r\nX-Evil: 1"},
	    {.base_url = "http://x", .account_id = "a", .token = ""},
	    {.base_url = "http://x", .account_id = "a", .auth_email = "e", .auth_key = "k\n"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = (void *)1;
		ck_assert_msg(api_client_new(&bad[i], &c) == -EINVAL, "config %zu accepted", i);
		ck_assert_ptr_null(c);
	}
}
END_TEST

/* Local argument checks fail before any request. */
START_TEST(test_local_argument_errors)
{
	struct api_config cfg = {
	    .base_url = "http://127.0.0.1:1/client/v4", .account_id = "a", .token = "t"};
	struct api_client *c;
	struct api_err e;
	struct api_image img;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	struct api_upload both = {.fd = 0, .url = "http://x"}, none = {.fd = -1};
	ck_assert_int_eq(api_image_upload(c, &both, &img, &e), -EINVAL);
	ck_assert_int_eq(api_image_upload(c, &none, &img, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.message, "exactly one"));
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct api_upload pipe_up = {.fd = p[0], .require_signed_urls = -1};
	ck_assert_int_eq(api_image_upload(c, &pipe_up, &img, &e), -EINVAL);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(api_image_get(c, "", &img, &e), -EINVAL);
	ck_assert_int_eq(api_image_delete(c, NULL, &e), -EINVAL);
	struct api_image_patch bad_meta = {.metadata_json = "{not json", .require_signed_urls = -1};
	ck_assert_int_eq(api_image_edit(c, "x", &bad_meta, &img, &e), -EINVAL);
	struct api_image_patch arr_meta = {.metadata_json = "[1]", .require_signed_urls = -1};
	ck_assert_int_eq(api_image_edit(c, "x", &arr_meta, &img, &e), -EINVAL);
	ck_assert_int_eq(api_variant_create(c, "v", "nope", -1, NULL, &e), -EINVAL);
	ck_assert_int_eq(api_variant_create(c, "v", NULL, -1, NULL, &e), -EINVAL);
	ck_assert_int_eq(api_key_put(c, "", NULL, &e), -EINVAL);
	ck_assert_int_eq(api_images_list_v1(c, 0, 10, NULL, NULL, NULL, NULL, &e), -EINVAL);
	ck_assert_int_eq(api_image_blob(c, "x", -1, 0, NULL, NULL, 0, &e), -EBADF);
	struct api_counters k;
	api_counters_get(c, &k);
	ck_assert_uint_eq(k.requests, 0);
	api_client_free(c);
}
END_TEST

void add_client_tests(TCase *tc)
{
	tcase_add_test(tc, test_client_config);
	tcase_add_test(tc, test_local_argument_errors);
}

/* api_activity_get: attempts by operation (read from the URL) and host, 429s, bytes,
 * uploads done and failed, and the limiter's budget. */
START_TEST(test_activity_counts_ops_hosts_uploads)
{
	struct api_stats st;
	struct api_image img;
	struct api_activity a;
	char host[64];
	fake_add_reply(&F, 429, NULL, ERR_ENV(971, "Please wait"));
	fake_add_reply(&F, 200, NULL, OK_ENV("{\"count\":{\"allowed\":1,\"current\":0}}"));
	fake_add_reply(&F, 404, NULL, ERR_ENV(5404, "Image not found"));
	fake_add_reply(&F, 200, NULL, OK_ENV(IMG("gen-1", "x.png")));
	fake_add_reply(&F, 415, NULL, ERR_ENV(5455, "Unsupported image format"));
	fake_add_reply(&F, 200, "Content-Type: image/png\r\n", PNG_BYTES);
	start();
	struct api_client *c = client_ex(3, 5000, 100, 20);
	struct api_upload up = {
	    .fd = -1, .url = "http://127.0.0.1:9/x.png", .require_signed_urls = -1};
	ck_assert_int_eq(api_stats_get(c, &st, NULL), 0);
	ck_assert_int_eq(api_image_get(c, "a/b", &img, NULL), -ENOENT);
	ck_assert_int_eq(api_image_upload(c, &up, &img, NULL), 0);
	api_image_release(&img);
	ck_assert_int_eq(api_image_upload(c, &up, &img, NULL), -EINVAL);
	int fd = tmpfd(NULL, 0);
	ck_assert_int_eq(api_image_blob(c, "a/b", fd, 0, NULL, NULL, 0, NULL), 0);
	close(fd);
	api_activity_get(c, &a);
	ck_assert_uint_eq(a.requests, 6);
	ck_assert_uint_eq(a.per_op[API_OP_STATS], 2);
	ck_assert_uint_eq(a.per_op[API_OP_GET], 1);
	ck_assert_uint_eq(a.per_op[API_OP_UPLOAD], 2);
	ck_assert_uint_eq(a.per_op[API_OP_BLOB], 1);
	ck_assert_uint_eq(a.per_op[API_OP_LIST] + a.per_op[API_OP_OTHER], 0);
	ck_assert_uint_eq(a.http_429, 1);
	ck_assert_uint_eq(a.uploads_done, 1);
	ck_assert_uint_eq(a.uploads_failed, 1);
	ck_assert_uint_eq(a.uploads_in_flight, 0);
	ck_assert_uint_ge(a.bytes_down, strlen(PNG_BYTES));
	ck_assert_uint_gt(a.bytes_up, 0);
	snprintf(host, sizeof(host), "127.0.0.1:%d", F.port);
	ck_assert_uint_eq(a.n_hosts, 1);
	ck_assert_str_eq(a.hosts[0].name, host);
	ck_assert_uint_eq(a.hosts[0].requests, 6);
	ck_assert(a.limited);
	ck_assert(a.budget_burst == 20 && a.budget_rate == 100);
	ck_assert(a.budget_left >= 0 && a.budget_left <= 20);
	ck_assert_str_eq(api_op_name(API_OP_UPLOAD), "upload");
	ck_assert_str_eq(api_op_name(-1), "other");
	api_client_free(c);
	fake_http_stop(&F);
}
END_TEST

void add_http_tests(TCase *tc)
{
	tcase_add_checked_fixture(tc, fake_setup, NULL);
	tcase_add_test(tc, test_get_escapes_id_and_sends_token);
	tcase_add_test(tc, test_email_key_auth_headers);
	tcase_add_test(tc, test_retry_503_then_ok);
	tcase_add_test(tc, test_retry_after_is_honoured);
	tcase_add_test(tc, test_429_exhausted_is_eagain);
	tcase_add_test(tc, test_500_exhausted_is_eio_and_404_not_retried);
	tcase_add_test(tc, test_delete_lost_response_then_404_is_success);
	tcase_add_test(tc, test_upload_with_id_recovers_lost_response);
	tcase_add_test(tc, test_upload_with_id_all_responses_lost);
	tcase_add_test(tc, test_upload_with_id_last_attempt_lost);
	tcase_add_test(tc, test_upload_with_id_foreign_duplicate_is_eexist);
	tcase_add_test(tc, test_upload_anonymous_not_retried_after_send);
	tcase_add_test(tc, test_upload_by_url_fields);
	tcase_add_test(tc, test_blob_streams_to_fd);
	tcase_add_test(tc, test_blob_short_body_retried_from_start_offset);
	tcase_add_test(tc, test_blob_caps_and_errors);
	tcase_add_test(tc, test_json_body_cap_and_garbage);
	tcase_add_test(tc, test_hung_server_times_out);
	tcase_add_test(tc, test_refused_connection_fails_fast);
	tcase_add_test(tc, test_list_v2_follows_tokens);
	tcase_add_test(tc, test_list_v2_options_stop_and_bad_tokens);
	tcase_add_test(tc, test_list_v1_page);
	tcase_add_test(tc, test_rate_limiter_throttles);
	tcase_add_test(tc, test_limiter_wait_not_charged_to_retry_budget);
	tcase_add_test(tc, test_keys_edit_variants_requests);
	tcase_add_test(tc, test_verbose_trace_redacts_secrets);
	tcase_add_test(tc, test_activity_counts_ops_hosts_uploads);
}

/*
 * api_http.c - one API call on the wire: easy-handle setup, body sinks, and the attempt
 * loop that applies api_retry.c's policy.
 *
 * Bounds: every transfer has a connect timeout, a low-speed abort (< 1 byte/s for
 * low_speed_time_s) and an overall timeout, so a dead or stalled server always produces an
 * error; the whole call (attempts + waits) stays within max_attempts and retry_budget_ms.
 * JSON bodies are capped (r->max_json), blob bodies are capped (r->max_bytes) and checked
 * against Content-Length. The handle is taken from the pool for the duration of the call.
 *
 * Hidden re-sends: when a request on a reused keep-alive connection gets no response byte,
 * libcurl silently re-sends it on a new connection. That is harmless for GET/PUT/PATCH,
 * but it would repeat an anonymous upload (a duplicate image) and it hides from the retry
 * logic that an earlier attempt may have acted (a DELETE would then report ENOENT, an
 * upload with a custom id EEXIST, for something that succeeded). A DELETE, a POST with an
 * in-memory body and an upload without an id therefore always open a fresh connection
 * (CURLOPT_FRESH_CONNECT), where libcurl never re-sends, and every repetition goes through
 * api_retry.c; the new connection stays cached for later requests.
 *
 * Uploads with a custom id (every upload through the mount) reuse connections like GETs: a
 * fresh connection per upload costs a TCP and a TLS handshake, 1-2 round trips, on every
 * file of a bulk copy. libcurl can re-send a body it has begun to send only by rewinding
 * it, which it asks seek_cb for (our own attempts start at reset_sinks instead): seek_cb
 * refuses, so the attempt ends with CURLE_SEND_FAIL_REWIND, a dropped connection whose
 * outcome is unknown, and the repetition goes through api_retry.c like any other (an
 * "already exists" is then checked against the bytes, api_image_write.c). A re-send
 * without a rewind had sent no body byte, so the server cannot have acted on it.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define API_HTTP_BLOB_BUFFER (256L * 1024) /* curl's receive/send buffer for blob bodies */

void api_req_init(struct api_req *r, const char *method, const char *url, enum api_idem idem)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->url = url;
	r->idem = idem;
	r->max_json = API_MAX_JSON_SMALL;
	r->sink_fd = -1;
	r->fd_start = -1;
}

void api_req_release(struct api_req *r)
{
	api_buf_release(&r->body);
}

char *api_url(const struct api_client *c, const char *pre, const char *esc, const char *post)
{
	struct api_buf b = {0};
	int rc = api_buf_adds(&b, c->images_url);
	if (!rc && pre)
		rc = api_buf_adds(&b, pre);
	if (!rc && esc)
		rc = api_buf_add_escaped(&b, esc);
	if (!rc && post)
		rc = api_buf_adds(&b, post);
	if (rc) {
		api_buf_release(&b);
		return NULL;
	}
	return api_buf_steal(&b);
}

/* ---- tracing ------------------------------------------------------------------ */

static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *ud)
{
	char out[4096];
	(void)h;
	(void)ud;
	switch (type) {
	case CURLINFO_TEXT:
		fprintf(stderr, "imagesfs-api: * %.*s", (int)(size > 1024 ? 1024 : size), data);
		break;
	case CURLINFO_HEADER_OUT:
	case CURLINFO_HEADER_IN:
		api_redact_headers(data, size, out, sizeof(out));
		fprintf(stderr, "imagesfs-api: %c %s", type == CURLINFO_HEADER_OUT ? '>' : '<',
			out);
		break;
	case CURLINFO_DATA_OUT:
	case CURLINFO_DATA_IN:
		fprintf(stderr, "imagesfs-api: %c [%zu bytes of body]\n",
			type == CURLINFO_DATA_OUT ? '>' : '<', size);
		break;
	default:
		break;
	}
	return 0;
}

/* ---- body sinks ---------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Decides on the first body byte whether this body is the blob (2xx in blob mode) or a
 * JSON document (everything else), and rejects a declared length over the cap early. */
static void classify_body(struct api_req *r)
{
	long code = 0;
	curl_off_t cl = -1;
	r->body_checked = 1;
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
	r->body_to_fd = r->sink_fd >= 0 && code >= 200 && code < 300;
	if (r->body_to_fd &&
	    curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
	    cl > 0 && (uint64_t)cl > r->max_bytes)
		r->sink_err = EFBIG;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
	struct api_req *r = ud;
	size_t n = size * nmemb;
	if (!r->body_checked)
		classify_body(r);
	if (r->sink_err)
		return 0;
	if (!r->body_to_fd) {
		int rc = api_buf_add(&r->body, p, n);
		if (rc) {
			r->sink_err = rc == -EFBIG ? EMSGSIZE : -rc;
			return 0;
		}
		return n;
	}
	if (n > r->max_bytes - r->written) {
		r->sink_err = EFBIG;
		return 0;
	}
	int e = write_all(r->sink_fd, p, n);
	if (e) {
		r->sink_err = e;
		return 0;
	}
	r->written += n;
	return n;
}

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *ud)
{
	struct api_req *r = ud;
	size_t want = size * nmemb, got = 0;
	while (got < want) {
		ssize_t n = api_mp_read_at(r->mp, r->mp->pos, buf + got, want - got);
		if (n < 0) {
			r->mp->read_errno = (int)-n;
			return CURL_READFUNC_ABORT;
		}
		if (n == 0)
			break;
		r->mp->pos += (uint64_t)n;
		got += (size_t)n;
	}
	return got;
}

/* Only libcurl seeks during an attempt: a rewind of bytes it already took is the start of
 * a hidden re-send (see the note at the top), refused; the first copy may have been acted
 * on. */
static int seek_cb(void *ud, curl_off_t off, int origin)
{
	struct api_req *r = ud;
	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->mp->total)
		return CURL_SEEKFUNC_CANTSEEK;
	if ((uint64_t)off < r->mp->pos) {
		r->outcome_unknown = 1;
		return CURL_SEEKFUNC_CANTSEEK;
	}
	r->mp->pos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

/* ---- handle setup ---------------------------------------------------------------- */

static struct curl_slist *add_header(struct curl_slist *l, const char *h, int *rc)
{
	if (*rc)
		return l;
	struct curl_slist *n = curl_slist_append(l, h);
	if (!n) {
		*rc = -ENOMEM;
		return l;
	}
	return n;
}

static struct curl_slist *build_headers(struct api_client *c, struct api_req *r, int *rc)
{
	struct curl_slist *l = NULL;
	char ct[160];
	*rc = 0;
	if (!r->delivery) { /* credentials never go to a delivery host */
		l = add_header(l, r->auth ? r->auth : c->auth_hdr[0], rc);
		if (!r->auth && c->auth_hdr[1])
			l = add_header(l, c->auth_hdr[1], rc);
	}
	l = add_header(
	    l, r->sink_fd >= 0 ? "Accept: image/*, application/json" : "Accept: application/json",
	    rc);
	if (r->mp) {
		api_mp_content_type(r->mp, ct, sizeof(ct));
		char line[200];
		snprintf(line, sizeof(line), "Content-Type: %s", ct);
		l = add_header(l, line, rc);
	} else if (r->json_body) {
		l = add_header(l, "Content-Type: application/json", rc);
	} else if (strcmp(r->method, "PUT") == 0) {
		l = add_header(l, "Content-Type:", rc); /* empty body: no form type */
	}
	return l;
}

static void set_body(struct api_req *r)
{
	CURL *h = r->h;
	if (strcmp(r->method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		return;
	}
	if (r->mp) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->mp->total);
	} else if (r->json_body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->json_body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->json_body));
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	if (strcmp(r->method, "POST") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	int rewinds = r->mp && r->idem == API_CREATE_WITH_ID; /* a re-send is refused */
	if ((!rewinds && strcmp(r->method, "POST") == 0) || strcmp(r->method, "DELETE") == 0)
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L); /* see the note at the top */
}

static void setup_handle(struct api_client *c, struct api_req *r, struct curl_slist *hdrs,
			 char *errbuf)
{
	CURL *h = r->h;
	curl_easy_setopt(h, CURLOPT_URL, r->url);
	curl_easy_setopt(h, CURLOPT_SHARE, c->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->request_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 60L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 30L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	if (r->sink_fd < 0) /* JSON compresses well; a blob must match its Content-Length */
		curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	/* Blobs arrive and leave in big pieces: one write(2)/read per 256 KiB instead of per
	 * 16/64 KiB (curl's defaults, kept for JSON so idle pooled handles stay small). */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE,
			 r->sink_fd >= 0 ? API_HTTP_BLOB_BUFFER : (long)CURL_MAX_WRITE_SIZE);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, r->mp ? API_HTTP_BLOB_BUFFER : 65536L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	if (c->verbose) {
		curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
		curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
	}
	set_body(r);
}

/* ---- attempts ------------------------------------------------------------------- */

/* Rewinds the sinks before an attempt. 0, or -errno when the fd cannot be rewound after a
 * partial blob (then the call cannot be retried). */
static int reset_sinks(struct api_req *r)
{
	api_buf_reset(&r->body);
	r->body_checked = 0;
	r->body_to_fd = 0;
	r->sink_err = 0;
	r->content_type[0] = '\0';
	if (r->mp) {
		r->mp->pos = 0;
		r->mp->read_errno = 0;
	}
	if (r->written > 0) {
		if (r->fd_start < 0 || lseek(r->sink_fd, r->fd_start, SEEK_SET) < 0 ||
		    ftruncate(r->sink_fd, r->fd_start) < 0)
			return -ESPIPE;
		r->written = 0;
	}
	return 0;
}

/* Waits for the limiter of the request's route (the token's, or the global one) before an
 * attempt; returns the nanoseconds waited. */
static int64_t throttle(struct api_client *c, struct api_req *r)
{
	if (!r->pick)
		return api_throttle(c);
	int64_t wait_ns = api_batch_throttle_ns(&c->batch, r->pick, api_now_ns());
	if (wait_ns <= 0)
		return 0;
	long ms = (long)((wait_ns + 999999) / 1000000);
	atomic_fetch_add(&c->batch_throttled_ms, (uint64_t)ms);
	api_sleep_ms(ms);
	return (int64_t)ms * 1000000;
}

struct attempt {
	int curl_code;
	long status;
	long retry_after_ms;
};

static void attempt_once(struct api_client *c, struct api_req *r, struct curl_slist *hdrs,
			 struct attempt *a, char *errbuf)
{
	char *ct = NULL;
	curl_off_t ra = -1;

	errbuf[0] = '\0';
	setup_handle(c, r, hdrs, errbuf);
	if (!r->delivery) { /* delivery is not an API call: outside the API budget */
		r->throttled_ns += throttle(c, r);
		atomic_fetch_add(&c->n_requests, 1);
	}
	if (r->pick)
		atomic_fetch_add(&c->n_batch_requests, 1);
	r->host_batch = r->pick != NULL;
	r->attempts++;
	a->curl_code = (int)curl_easy_perform(r->h);
	a->status = 0;
	a->retry_after_ms = -1;
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &a->status);
	if (curl_easy_getinfo(r->h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		api_strlcpy(r->content_type, ct, sizeof(r->content_type));
	if (curl_easy_getinfo(r->h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		a->retry_after_ms = ra > 3600 ? 3600000L : (long)ra * 1000;
	r->status = a->curl_code ? 0 : a->status;
	api_tally_attempt(c, r, r->status);
}

/* A completed 2xx blob must be as long as its Content-Length says. */
static int check_blob_length(struct api_req *r, struct api_err *err)
{
	curl_off_t cl = -1;
	if (!r->body_to_fd || r->sink_fd < 0)
		return 0;
	if (curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
	    cl >= 0 && (uint64_t)cl != r->written) {
		snprintf(err->message, sizeof(err->message),
			 "blob body is %llu bytes, Content-Length said %lld",
			 (unsigned long long)r->written, (long long)cl);
		return -EIO;
	}
	return 0;
}

/* Fills err for a failed last attempt and returns -errno. */
static int attempt_error(struct api_req *r, const struct attempt *a, const char *errbuf,
			 struct api_err *err)
{
	err->http_status = a->curl_code ? 0 : a->status;
	err->curl_code = a->curl_code;
	if (r->sink_err) {
		err->curl_code = 0;
		if (r->sink_err == EMSGSIZE) {
			snprintf(err->message, sizeof(err->message),
				 "response body exceeds the %zu-byte cap", r->max_json);
			return -EIO;
		}
		if (r->sink_err == EFBIG)
			snprintf(err->message, sizeof(err->message),
				 "blob exceeds the %llu-byte cap",
				 (unsigned long long)r->max_bytes);
		else
			snprintf(err->message, sizeof(err->message), "cannot write blob: %s",
				 strerror(r->sink_err));
		return -r->sink_err;
	}
	if (r->mp && r->mp->read_errno) {
		err->curl_code = 0;
		snprintf(err->message, sizeof(err->message), "cannot read upload file: %s",
			 strerror(r->mp->read_errno));
		return -r->mp->read_errno;
	}
	if (a->curl_code) {
		api_strlcpy(err->message,
			    errbuf[0] ? errbuf : curl_easy_strerror((CURLcode)a->curl_code),
			    sizeof(err->message));
		return -api_errno_map(0, 0, a->curl_code);
	}
	/* An HTTP error: the body should be a Cloudflare envelope. */
	struct json_object *root = NULL, *result;
	char msg[128];
	if (api_json_parse(r->body.data, r->body.len, &root, msg, sizeof(msg)) == 0) {
		int rc = api_envelope(root, a->status, &result, err);
		json_object_put(root);
		if (rc)
			return rc;
	}
	snprintf(err->message, sizeof(err->message), "HTTP %ld without an error envelope",
		 a->status);
	return -api_errno_map(a->status, 0, 0);
}

/* Whether to try again, and after how long (*delay_ms). */
static int want_retry(struct api_client *c, struct api_req *r, const struct attempt *a,
		      int64_t start_ns, long *delay_ms)
{
	if (r->sink_err || (r->mp && r->mp->read_errno))
		return 0; /* local failures do not heal by repeating */
	if (r->written > 0 && r->fd_start < 0)
		return 0; /* partial blob in an fd that cannot be rewound */
	if (r->attempts >= c->max_attempts || !api_retry_should(r->idem, a->curl_code, a->status))
		return 0;
	/* Time queued in a limiter is not time the server took: it does not use up the budget
	 * (under a busy limiter a call would otherwise give up before its first retry). */
	long elapsed_ms = (long)((api_now_ns() - start_ns - r->throttled_ns) / 1000000);
	long d = api_retry_delay_ms(r->attempts, a->retry_after_ms, api_retry_rand());
	if (elapsed_ms + d > c->retry_budget_ms)
		return 0;
	*delay_ms = d;
	return 1;
}

static int run_attempts(struct api_client *c, struct api_req *r, struct curl_slist *hdrs,
			struct api_err *err)
{
	char errbuf[CURL_ERROR_SIZE];
	struct attempt a;
	int64_t start = api_now_ns();
	long delay = 0;

	if (r->sink_fd >= 0)
		r->fd_start = lseek(r->sink_fd, 0, SEEK_CUR);
	for (;;) {
		int rc = reset_sinks(r);
		if (rc)
			return api_fail(err, -rc, "cannot rewind blob fd for a retry");
		attempt_once(c, r, hdrs, &a, errbuf);
		if (!a.curl_code && !r->sink_err && a.status >= 200 && a.status < 300) {
			memset(err, 0, sizeof(*err));
			err->attempts = r->attempts;
			rc = check_blob_length(r, err);
			if (rc)
				err->http_status = a.status;
			return rc;
		}
		/* Recorded for the last attempt too: an upload whose final attempt was lost
		 * must still be checked for (recover_upload), not reported as failed. */
		if (api_retry_outcome_unknown(a.curl_code, a.status))
			r->outcome_unknown = 1;
		if (!want_retry(c, r, &a, start, &delay))
			break;
		atomic_fetch_add(&c->n_retries, 1);
		api_sleep_ms(delay);
	}
	memset(err, 0, sizeof(*err));
	int rc = attempt_error(r, &a, errbuf, err);
	err->attempts = r->attempts;
	return rc;
}

/* One route: r->url with r->auth (NULL = the client's credentials). */
static int http_do_route(struct api_client *c, struct api_req *r, struct api_err *err)
{
	int rc;
	struct curl_slist *hdrs = build_headers(c, r, &rc);
	if (rc) {
		curl_slist_free_all(hdrs);
		return api_fail(err, ENOMEM, "out of memory");
	}
	r->h = api_pool_take(c);
	if (!r->h) {
		curl_slist_free_all(hdrs);
		return api_fail(err, ENOMEM, "cannot create a curl handle");
	}
	rc = run_attempts(c, r, hdrs, err);
	/* The handle must not keep pointers into this request's memory. */
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, NULL);
	api_pool_give(c, r->h);
	r->h = NULL;
	curl_slist_free_all(hdrs);
	return rc;
}

/* ---- the batch host ------------------------------------------------------------- */

static enum api_batch_fetch fetch_class(int rc, const struct api_err *err)
{
	long s = err->http_status;
	if (rc == 0 || s == 400 || s == 401 || s == 403 || s == 404 || s == 405)
		return API_BATCH_FETCH_PERMANENT;
	return API_BATCH_FETCH_TRANSIENT;
}

/* {"token":..,"expiresAt":..} into token (cap tlen) and the lifetime left. */
static int parse_batch_token(struct json_object *result, char *token, size_t tlen,
			     int64_t *lifetime_ms)
{
	struct json_object *t, *x;
	int64_t exp_ms;
	struct timespec ts;
	if (!json_object_is_type(result, json_type_object) ||
	    !json_object_object_get_ex(result, "token", &t) ||
	    !json_object_is_type(t, json_type_string) ||
	    !json_object_object_get_ex(result, "expiresAt", &x) ||
	    !json_object_is_type(x, json_type_string) ||
	    api_parse_rfc3339(json_object_get_string(x), &exp_ms) != 0)
		return -EINVAL;
	const char *s = json_object_get_string(t);
	size_t n = strlen(s);
	if (n == 0 || n >= tlen || strpbrk(s, "\r\n \t"))
		return -EINVAL;
	memcpy(token, s, n + 1);
	clock_gettime(CLOCK_REALTIME, &ts);
	*lifetime_ms = exp_ms - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	return 0;
}

/* GET .../images/v1/batch_token on the global API and hands the outcome to the pool. The
 * token is a secret: it goes into the pool only, never into a message. */
static void batch_fetch(struct api_client *c)
{
	struct api_req r;
	struct api_err err;
	struct json_object *root = NULL, *result;
	char token[API_MAX_TOKEN_LEN + 1] = "", buf[320], line[400];
	int64_t lifetime_ms = 0;
	enum api_batch_fetch kind = API_BATCH_FETCH_TRANSIENT;
	char *url = api_url(c, "/v1/batch_token", NULL, NULL);
	int rc = -ENOMEM;

	memset(&err, 0, sizeof(err));
	if (url) {
		api_req_init(&r, "GET", url, API_IDEMPOTENT);
		rc = api_http_json(c, &r, &root, &result, &err);
		if (!rc && parse_batch_token(result, token, sizeof(token), &lifetime_ms) != 0)
			snprintf(err.message, sizeof(err.message),
				 "batch_token answer has no token");
		else if (!rc)
			kind = API_BATCH_FETCH_OK;
		if (kind != API_BATCH_FETCH_OK)
			kind = fetch_class(rc, &err);
		json_object_put(root);
		api_req_release(&r);
		free(url);
	}
	rc = api_batch_fetch_done(&c->batch, api_now_ns(), kind, token, lifetime_ms);
	explicit_bzero(token, sizeof(token));
	if (rc == 1 && c->log_fn) {
		snprintf(line, sizeof(line), "batch API unavailable (%s): using the global API",
			 api_err_str(&err, buf, sizeof(buf)));
		c->log_fn(c->log_arg, line);
	}
}

/* After a failed call on the batch host: 1 if it may be repeated (401/403: the token was
 * refused before anything was done), -1 if it must go to the global API (the host was not
 * reached, or does not know the route: 404/7003, a batch_url that is no batch host), 0 if
 * the failure is the call's own. */
static int batch_refused(struct api_client *c, const struct api_req *r, const struct api_err *err)
{
	char buf[320], line[400];
	if (r->status == 401 || r->status == 403)
		return 1;
	if (!r->outcome_unknown && api_retry_not_sent(err->curl_code)) {
		api_batch_host_down(&c->batch, api_now_ns());
		return -1;
	}
	if (r->status == 404 && err->cf_code == 7003) {
		if (api_batch_disable(&c->batch) && c->log_fn) {
			snprintf(
			    line, sizeof(line),
			    "batch host does not serve the batch API (%s): using the global API",
			    api_err_str(err, buf, sizeof(buf)));
			c->log_fn(c->log_arg, line);
		}
		return -1;
	}
	return 0;
}

/* A covered call: on the batch host with a pooled token; a refused token is dropped and the
 * call repeated with another one (a fetch if need be); without tokens, the global API.
 * outcome_unknown and the attempt count carry over between routes, so recovery of a lost
 * response (api_image_write.c, api_outcome.c) sees every attempt. Returns 1 when the global
 * API must be used. */
static int http_do_batch(struct api_client *c, struct api_req *r, const char *suffix,
			 struct api_err *err)
{
	const char *global_url = r->url;
	struct api_buf u = {0};
	int rc = 1, prior = 0;

	if (api_buf_adds(&u, c->batch.images_url) || api_buf_adds(&u, suffix)) {
		api_buf_release(&u);
		return 1;
	}
	for (int round = 0; round < API_BATCH_ROUNDS && rc == 1; round++) {
		struct api_bpick p;
		enum api_batch_act act = api_batch_acquire(&c->batch, api_now_ns(), &p);
		if (act == API_BATCH_FETCH) {
			batch_fetch(c);
			continue;
		}
		if (act == API_BATCH_WAIT) {
			api_batch_wait(&c->batch, API_BATCH_WAIT_MS);
			continue;
		}
		if (act == API_BATCH_GLOBAL)
			break;
		r->url = u.data;
		r->auth = p.hdr;
		r->pick = &p;
		rc = http_do_route(c, r, err);
		int refused = rc != 0 ? batch_refused(c, r, err) : 0;
		if (api_batch_done(&c->batch, &p, refused == 1) && c->log_fn)
			c->log_fn(c->log_arg,
				  "batch host refuses every batch token (HTTP 401/403): "
				  "using the global API");
		r->url = global_url;
		r->auth = NULL;
		r->pick = NULL;
		if (refused) {
			prior += r->attempts;
			r->attempts = 0;
			rc = 1;
		}
		if (refused < 0)
			break;
	}
	api_buf_release(&u);
	r->attempts += prior;
	if (rc != 1)
		err->attempts = r->attempts;
	return rc;
}

int api_http_do(struct api_client *c, struct api_req *r, struct api_err *err)
{
	int rc = 1;
	size_t blen = strlen(c->images_url);
	if (r->sink_fd < 0)
		r->body.max = r->max_json;
	else
		r->body.max = API_MAX_JSON_SMALL; /* error envelopes of blob requests */
	if (c->batch.images_url && strncmp(r->url, c->images_url, blen) == 0 &&
	    api_batch_covered(r->method, r->url + blen))
		rc = http_do_batch(c, r, r->url + blen, err);
	if (rc == 1) {
		int prior = r->attempts;
		r->attempts = 0;
		rc = http_do_route(c, r, err);
		r->attempts += prior;
		err->attempts = r->attempts;
	}
	return rc;
}

int api_http_json(struct api_client *c, struct api_req *r, struct json_object **root,
		  struct json_object **result, struct api_err *err)
{
	*root = NULL;
	*result = NULL;
	int rc = api_http_do(c, r, err);
	if (rc)
		return rc;
	int attempts = err->attempts;
	rc = api_json_parse(r->body.data, r->body.len, root, err->message, sizeof(err->message));
	if (!rc) {
		rc = api_envelope(*root, r->status, result, err);
		if (rc) {
			json_object_put(*root);
			*root = NULL;
		} else {
			memset(err, 0, sizeof(*err));
		}
	} else {
		err->http_status = r->status;
	}
	err->attempts = attempts;
	return rc;
}

/*
 * api_internal.h - internals of the Images API client, shared by the api/ sources and
 * exposed to tests/unit/test_api.c. Not installed, not included outside api/ and its tests.
 *
 * Module map:
 *   api_util.c      growable capped buffers, percent-encoding, RFC 3339, header redaction,
 *                   content sniffing, custom-id rules, the errno table
 *   api_json.c      json-c parsing of every response shape (all lookups borrowed, copied out)
 *   api_multipart.c multipart/form-data encoder streaming the file part from an fd
 *   api_retry.c     retry decisions, backoff with full jitter, token bucket
 *   api_client.c    client lifetime, easy-handle pool, CURLSH share, counters
 *   api_http.c      one request = attempts + retries + sinks (JSON buffer or fd)
 *   api_images.c    image endpoints that read (list, details, blob, delivery) and the
 *                   single-image call; api_misc.c keys, stats, variants
 *   api_image_write.c  upload (settling a lost one), edit, delete
 *   api_outcome.c   settles a DELETE or PATCH whose outcome is unknown by reading it back
 *   api_batch.c     batch API token pool and per-token limiters (no HTTP); api_http.c
 *                   routes the covered calls through it
 *   api_activity.c  per-host / per-operation tallies behind api_activity_get
 */
#ifndef IMAGESFS_API_INTERNAL_H
#define IMAGESFS_API_INTERNAL_H

#include "api.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Caps on everything that grows from network input. */
#define API_MAX_JSON_BYTES (64u * 1024 * 1024) /* one v2 list page (10000 images) */
#define API_MAX_JSON_SMALL (4u * 1024 * 1024)  /* any other JSON response */
#define API_JSON_MAX_DEPTH 64		       /* json_tokener nesting limit */
#define API_MAX_TOKEN_LEN 4096		       /* v2 continuation_token */
#define API_BLOB_SLACK (1024 * 1024)	       /* default blob cap = 10 MB + this */
#define API_MAX_EMPTY_PAGES 100		       /* consecutive empty v2 pages with a token */
#define API_POOL_MAX_IDLE 16		       /* idle curl easy handles kept */

/* Defaults for struct api_config fields left 0. */
#define API_DEF_CONNECT_TIMEOUT_MS 10000L
#define API_DEF_LOW_SPEED_TIME_S 30L
#define API_DEF_REQUEST_TIMEOUT_MS 120000L
#define API_DEF_MAX_ATTEMPTS 5
#define API_DEF_RETRY_BUDGET_MS 30000L
/* Cloudflare's per-user limit is 1200 requests per 300 s. A token bucket of rate r and size b
 * sends at most b + r*S requests in any S seconds, so b = 120 and r = (1200 - 120) / 300. */
#define API_DEF_RATE_PER_SEC 3.6
#define API_DEF_RATE_BURST 120
/* How far the server's clock may be behind ours when matching a recovered upload. */
#define API_UPLOAD_CLOCK_SKEW_MS 300000

/* Backoff: full jitter over min(cap, base * 2^(retry-1)). */
#define API_BACKOFF_BASE_MS 100L
#define API_BACKOFF_CAP_MS 5000L

/* ---- api_util.c ----------------------------------------------------------------- */

/* A growable byte buffer that refuses to grow past `max` (0 = no cap). data is always
 * NUL-terminated when non-NULL. */
struct api_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};
/* 0, -ENOMEM, or -EFBIG when len + n would exceed max. */
int api_buf_add(struct api_buf *b, const void *p, size_t n);
int api_buf_adds(struct api_buf *b, const char *s);
int api_buf_printf(struct api_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s percent-encoded (every byte outside [A-Za-z0-9-._~] as %XX, uppercase). */
int api_buf_add_escaped(struct api_buf *b, const char *s);
void api_buf_reset(struct api_buf *b); /* len = 0, keeps memory */
void api_buf_release(struct api_buf *b);
/* Takes the data out (caller frees); the buffer is left empty. NULL if empty. */
char *api_buf_steal(struct api_buf *b);

/* Returns a malloc'd percent-encoded copy of s, NULL on ENOMEM. */
char *api_escape(const char *s);

/* RFC 3339 date-time ("2022-01-31T16:39:28.458Z", fraction optional, 'Z' or +hh:mm) to
 * Unix epoch milliseconds. 0 or -EINVAL. */
int api_parse_rfc3339(const char *s, int64_t *ms_out);

/* Copies a block of HTTP header lines into out (size outlen, always NUL-terminated),
 * replacing the value of Authorization and X-Auth-Key lines with "[redacted]".
 * Returns the number of bytes written (excluding NUL). */
size_t api_redact_headers(const char *in, size_t len, char *out, size_t outlen);

/* Content-Type of image bytes from their first bytes: image/png, image/jpeg, image/gif,
 * image/webp, image/svg+xml, image/avif, image/heic, or application/octet-stream. */
const char *api_sniff_content_type(const unsigned char *p, size_t n);

/* 1 if s is UUID-shaped (8-4-4-4-12 hex digits, any case). */
int api_is_uuid(const char *s);

/* Copies at most dstlen-1 bytes of src into dst, NUL-terminates. */
void api_strlcpy(char *dst, const char *src, size_t dstlen);

/* Monotonic clock in nanoseconds. */
int64_t api_now_ns(void);
/* Sleeps ms milliseconds (restarting on EINTR). */
void api_sleep_ms(long ms);

/* ---- api_json.c ----------------------------------------------------------------- */

/* Parses text (len bytes, need not be NUL-terminated) with the depth cap and strict mode.
 * *out receives a new reference. 0 or -EIO with a message in msg. */
int api_json_parse(const char *text, size_t len, struct json_object **out, char *msg,
		   size_t msglen);

/* Reads the Cloudflare envelope of a response. On success (HTTP 2xx and "success":true)
 * returns 0 and *result is borrowed from root (may be json null). Otherwise fills
 * err->cf_code / err->message from errors[0] and returns -api_errno_map(...); a body that
 * is not an envelope gives -EIO (or the HTTP status mapping when status is not 2xx). */
int api_envelope(struct json_object *root, long http_status, struct json_object **result,
		 struct api_err *err);

/* Copies an Image object into out (out is zeroed first and, on failure, left zeroed).
 * 0 or -EIO with a message in msg (missing/ill-typed field). */
int api_parse_image(struct json_object *o, struct api_image *out, char *msg, size_t msglen);

/* One v2/v1 page: calls cb for each element of result.images (image released after each
 * call). *n_out = images seen. token (size toklen) receives result.continuation_token, or
 * "" when it is null, missing or empty. A non-zero cb return stops and is returned as is. */
int api_parse_list_page(struct json_object *result, api_image_cb cb, void *arg, size_t *n_out,
			char *token, size_t toklen, char *msg, size_t msglen);

int api_parse_keys(struct json_object *result, struct api_key_list *out, char *msg, size_t msglen);
/* `fallback_id` names the variant when the object has no id (list map key); nullable. */
int api_parse_variant(struct json_object *o, const char *fallback_id, struct api_variant *out,
		      char *msg, size_t msglen);
/* result.variants: an object keyed by variant name (an array is accepted too). */
int api_parse_variants(struct json_object *result, struct api_variant_list *out, char *msg,
		       size_t msglen);
int api_parse_stats(struct json_object *result, struct api_stats *out, char *msg, size_t msglen);

/* ---- api_multipart.c ------------------------------------------------------------ */

/* A multipart/form-data body: text parts and the part headers are in `head`, the file
 * part's bytes are read from `fd` on demand with pread (never copied whole), and `tail`
 * closes the body. The total size is known up front, so it is sent with Content-Length. */
struct api_mp {
	char boundary[72];
	struct api_buf head;
	struct api_buf tail;
	int fd; /* -1 when there is no file part */
	uint64_t file_size;
	uint64_t total; /* valid after api_mp_finish */
	uint64_t pos;	/* read position for the curl read callback */
	int read_errno; /* set when pread failed or the file shrank */
	int finished;
};
/* boundary NULL = 32 random hex digits after "----imagesfs". 0 or -EINVAL/-ENOMEM. */
int api_mp_init(struct api_mp *mp, const char *boundary);
/* Adds a text part. -EINVAL if value contains the boundary. */
int api_mp_add_text(struct api_mp *mp, const char *name, const char *value);
/* Adds the file part (at most one, after every text part): size bytes of fd from offset 0. */
int api_mp_add_file(struct api_mp *mp, const char *name, const char *filename,
		    const char *content_type, int fd, uint64_t size);
int api_mp_finish(struct api_mp *mp);
/* Copies up to len bytes of the body at offset off into buf. Returns bytes copied
 * (0 at the end) or -errno (pread failure, -EIO when the file is shorter than size). */
ssize_t api_mp_read_at(struct api_mp *mp, uint64_t off, char *buf, size_t len);
/* "multipart/form-data; boundary=..." into buf. */
void api_mp_content_type(const struct api_mp *mp, char *buf, size_t len);
void api_mp_release(struct api_mp *mp);

/* ---- api_retry.c ---------------------------------------------------------------- */

/* How a request may be repeated. */
enum api_idem {
	API_IDEMPOTENT,	    /* GET, DELETE, PUT key, PATCH */
	API_CREATE_WITH_ID, /* POST naming its resource: a duplicate on retry is detectable */
	API_CREATE_ANON,    /* POST without id: repeat only if it surely was not processed */
};

/* 1 if the curl failure is worth another attempt (network, timeout, TLS handshake). */
int api_retry_curl_transient(int curl_code);
/* 1 if the request surely never reached the server (resolve/connect failure). */
int api_retry_not_sent(int curl_code);
/* 1 for HTTP statuses worth another attempt: 429, 500, 502, 503, 504. */
int api_retry_status(long status);
/* Whether an attempt with this outcome may be repeated for this kind of request. */
int api_retry_should(enum api_idem idem, int curl_code, long status);
/* 1 if the server may have acted on a request whose attempt ended this way. */
int api_retry_outcome_unknown(int curl_code, long status);
/* Delay before retry number `retry` (1 = first retry): full jitter, rnd uniform 64-bit.
 * A Retry-After (ms, -1 = none) raises the delay to at least that. */
long api_retry_delay_ms(int retry, long retry_after_ms, uint64_t rnd);
/* Thread-local xorshift random numbers for jitter. */
uint64_t api_retry_rand(void);

/* Token bucket: `rate` tokens per second, at most `burst` stored. Not locked: the caller
 * holds the client lock. */
struct api_bucket {
	int enabled;
	double rate;
	double burst;
	double tokens; /* may go negative: reservations waiting for refill */
	int64_t last_ns;
};
void api_bucket_init(struct api_bucket *b, double rate, double burst, int64_t now_ns);
/* Takes one token; returns how long (ns) the caller must wait before sending. */
int64_t api_bucket_take(struct api_bucket *b, int64_t now_ns);

/* ---- api_batch.c ---------------------------------------------------------------- */

#define API_BATCH_MAX_TOKENS 16
#define API_DEF_BATCH_TOKENS 2	      /* see README "Performance": 8 writers need 2 */
#define API_DEF_BATCH_RATE 180.0      /* + burst 20 = at most 200 in any second per token */
#define API_DEF_BATCH_BURST 20
#define API_BATCH_MARGIN_MIN_MS 500   /* stop handing a token out this long before expiry.. */
#define API_BATCH_MARGIN_MAX_MS 60000 /* ..a fifth of its lifetime, within these bounds */
#define API_BATCH_MIN_LIFETIME_MS 1000
#define API_BATCH_REFETCH_MS 30000 /* pause after a transient token fetch failure */
#define API_BATCH_WAIT_MS 15000	   /* longest wait for another thread's token fetch */
#define API_BATCH_ROUNDS 4	   /* token switches per call before the global API */
#define API_BATCH_MAX_REFUSED 3	   /* fresh tokens refused in a row: give up */

struct api_btok {
	char *hdr;	    /* "Authorization: Bearer <token>"; secret; NULL = free slot */
	int64_t expires_ns; /* monotonic */
	int64_t renew_ns;   /* monotonic: not handed out from here on */
	uint64_t gen;	    /* tells a reused slot from the token a request picked */
	int inflight;
	int proven; /* a request with it was not refused */
	struct api_bucket bucket;
};

struct api_batch {
	char *images_url; /* batch origin + "/images"; immutable; NULL = batch off */
	size_t want;	  /* immutable */
	double rate;	  /* immutable */
	double burst;	  /* immutable */
	pthread_mutex_t lock;
	pthread_cond_t cond;			   /* signalled when a fetch ends */
	int state;				   /* guarded by lock */
	int fetching;				   /* guarded by lock */
	int64_t refetch_ns;			   /* guarded by lock */
	int64_t down_until_ns;			   /* guarded by lock: host unreachable */
	int refused_run;			   /* guarded by lock */
	uint64_t next_gen;			   /* guarded by lock */
	uint64_t fetched;			   /* guarded by lock */
	struct api_btok tok[API_BATCH_MAX_TOKENS]; /* guarded by lock */
};

/* A token picked for one request: a private copy of its header line (secret). */
struct api_bpick {
	int slot; /* -1 = none */
	uint64_t gen;
	char *hdr;
};

enum api_batch_act {
	API_BATCH_USE,	  /* *p holds a token: send on the batch host */
	API_BATCH_FETCH,  /* fetch a token, report it with api_batch_fetch_done, ask again */
	API_BATCH_WAIT,	  /* another thread is fetching: api_batch_wait, ask again */
	API_BATCH_GLOBAL, /* no token to be had now: use the global API */
};
enum api_batch_fetch {
	API_BATCH_FETCH_OK,
	API_BATCH_FETCH_TRANSIENT, /* network, 429, 5xx: try again later */
	API_BATCH_FETCH_PERMANENT, /* refused, unknown endpoint, no permission: give up */
};

/* origin: batch host without a trailing path. want: tokens to keep (1..MAX). */
int api_batch_init(struct api_batch *b, const char *origin, size_t want, double rate,
		   double burst);
void api_batch_release(struct api_batch *b);
enum api_batch_act api_batch_acquire(struct api_batch *b, int64_t now_ns, struct api_bpick *p);
/* Waits (at most max_ms) until no fetch is in progress. */
void api_batch_wait(struct api_batch *b, long max_ms);
/* Ends a fetch (after API_BATCH_FETCH). token (borrowed) and lifetime_ms for OK. Returns 1
 * when this call switched the pool to FALLBACK (log it once), 0, or -ENOMEM. */
int api_batch_fetch_done(struct api_batch *b, int64_t now_ns, enum api_batch_fetch result,
			 const char *token, int64_t lifetime_ms);
/* Ends a request made with p; refused = the server rejected the token (it is dropped).
 * Returns 1 when API_BATCH_MAX_REFUSED tokens in a row were refused before any request
 * with them got through, and the pool gave up (log it). */
int api_batch_done(struct api_batch *b, struct api_bpick *p, int refused);
/* The batch host could not be reached: use the global API for API_BATCH_REFETCH_MS. */
void api_batch_host_down(struct api_batch *b, int64_t now_ns);
/* Gives the batch API up for good (FALLBACK); 1 when this call did it (log it once). */
int api_batch_disable(struct api_batch *b);
/* Takes one request from p's token bucket: how long to wait before sending (ns). */
int64_t api_batch_throttle_ns(struct api_batch *b, const struct api_bpick *p, int64_t now_ns);
void api_batch_snapshot_of(struct api_batch *b, int64_t now_ns, struct api_batch_snapshot *out);
/* 1 if METHOD on images_url + suffix is a call the batch host serves. */
int api_batch_covered(const char *method, const char *suffix);

/* ---- api_client.c --------------------------------------------------------------- */

/* Tallies of struct api_activity, guarded by their own lock (never held across I/O). */
struct api_tally {
	pthread_mutex_t lock;
	uint64_t http_429, bytes_up, bytes_down;
	uint64_t per_op[API_OP_N];
	size_t n_hosts;
	char host[API_ACT_MAX_HOSTS][128];
	uint64_t host_requests[API_ACT_MAX_HOSTS + 1];
	uint64_t uploads_done, uploads_failed, uploads_in_flight, waiting;
};

struct api_client {
	char *images_url;  /* base_url + "/accounts/<esc account>/images", immutable */
	char *auth_hdr[2]; /* header lines carrying the credentials; secret, immutable */
	char *ca_file;	   /* nullable, immutable */
	char *user_agent;  /* immutable */
	long connect_timeout_ms;
	long low_speed_time_s;
	long request_timeout_ms;
	long retry_budget_ms;
	int max_attempts;
	int verbose;

	CURLSH *share; /* DNS cache + TLS sessions, locked by share_lock[] */
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];

	pthread_mutex_t lock;
	CURL *idle[API_POOL_MAX_IDLE]; /* guarded by lock */
	size_t n_idle;		       /* guarded by lock */
	struct api_bucket bucket;      /* guarded by lock */
	struct api_batch batch;	       /* own lock; images_url NULL = batch off */
	void (*log_fn)(void *arg, const char *line);
	void *log_arg;

	atomic_uint_fast64_t n_requests;
	atomic_uint_fast64_t n_batch_requests;
	atomic_uint_fast64_t batch_throttled_ms;
	atomic_uint_fast64_t n_retries;
	atomic_uint_fast64_t throttled_ms;
	struct api_tally tally;
};

/* Takes an idle easy handle (reset) or makes a new one; NULL on ENOMEM. */
CURL *api_pool_take(struct api_client *c);
/* Returns a handle; it keeps its live connection for the next request. */
void api_pool_give(struct api_client *c, CURL *h);
/* Waits for the client-side rate limiter; returns the nanoseconds waited. */
int64_t api_throttle(struct api_client *c);

/* ---- api_activity.c ------------------------------------------------------------ */

struct api_req;
void api_tally_init(struct api_tally *t);
void api_tally_release(struct api_tally *t);
/* Counts one finished attempt of r (its host, operation, bytes, a 429). */
void api_tally_attempt(struct api_client *c, const struct api_req *r, long status);
/* +1 / -1 requests waiting in the rate limiter. */
void api_tally_waiting(struct api_client *c, int delta);
/* Brackets one api_image_upload call: begin, then end with its result. */
void api_tally_upload_begin(struct api_client *c);
void api_tally_upload_end(struct api_client *c, int rc);

/* ---- api_http.c ----------------------------------------------------------------- */

/* One API call: its attempts, retries and where the response body goes. */
struct api_req {
	/* in */
	const char *method; /* "GET", "POST", "PATCH", "PUT", "DELETE" */
	const char *url;    /* complete, already escaped */
	enum api_idem idem;
	const char *json_body; /* request body (Content-Type: application/json), nullable */
	struct api_mp *mp;     /* multipart body, nullable */
	size_t max_json;       /* cap on a JSON response body */
	int sink_fd;	       /* >= 0: stream a 2xx body to this fd (blob) */
	uint64_t max_bytes;    /* cap on what goes to sink_fd */
	int delivery;	       /* a delivery URL: no credentials, not throttled or counted */

	/* out */
	long status;		/* HTTP status of the last attempt, 0 if none */
	struct api_buf body;	/* JSON body (or an error body in blob mode) */
	uint64_t written;	/* bytes written to sink_fd by the last attempt */
	char content_type[128]; /* Content-Type of the last response */
	int attempts;
	int outcome_unknown; /* an earlier attempt may have been acted on */
	int host_batch;	     /* the last attempt went to the batch host */

	/* private to api_http.c */
	CURL *h;
	const char *auth; /* credential header line for this route; NULL = the client's */
	struct api_bpick *pick; /* batch token (its limiter) when on the batch host */
	int64_t throttled_ns;	/* time this call waited in a limiter (not a timeout) */
	int sink_err;	/* errno set by the body sinks (cap, write failure) */
	int body_to_fd; /* decided on the first body byte */
	int body_checked;
	off_t fd_start; /* offset of sink_fd at the start, -1 if not seekable */
};

void api_req_init(struct api_req *r, const char *method, const char *url, enum api_idem idem);
void api_req_release(struct api_req *r);
/* Runs the request with retries. Returns 0 when the last attempt got HTTP 2xx (the body is
 * in r->body or sink_fd). Otherwise fills err (status, Cloudflare code and message from an
 * error envelope, curl code) and returns -errno. err must be non-NULL. */
int api_http_do(struct api_client *c, struct api_req *r, struct api_err *err);
/* api_http_do + envelope check; *root receives the parsed document (caller puts it) and
 * *result is borrowed from it. */
int api_http_json(struct api_client *c, struct api_req *r, struct json_object **root,
		  struct json_object **result, struct api_err *err);

/* URL of images_url + suffix pieces: each `esc` piece is percent-encoded. Returns malloc'd
 * string or NULL. Example: api_url(c, "/v1/", id, "/blob") escapes only id. */
char *api_url(const struct api_client *c, const char *pre, const char *esc, const char *post);

/* ---- api_images.c --------------------------------------------------------------- */

/* 0 if id is a non-empty image id, else fills err and returns -EINVAL. */
int api_image_id_ok(const char *id, struct api_err *err);

/* Runs r and parses result as an image into out. */
int api_image_call(struct api_client *c, struct api_req *r, struct api_image *out,
		   struct api_err *err);

/* ---- api_outcome.c -------------------------------------------------------------- */

/* Called after a DELETE / PATCH of image id failed with rc while its outcome is unknown
 * (req.outcome_unknown). Reads the image back: returns 0 (err cleared but for attempts; for
 * an edit *out receives the image read back, owned by the caller) when the server holds the
 * requested state, else rc with err untouched. */
int api_outcome_delete(struct api_client *c, const char *id, struct api_err *err, int rc);
int api_outcome_edit(struct api_client *c, const char *id, const struct api_image_patch *p,
		     struct api_image *out, struct api_err *err, int rc);

/* Fills err from a local failure (no HTTP exchange) and returns -e. */
int api_fail(struct api_err *err, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

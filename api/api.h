/*
 * api.h - Cloudflare Images API client (libcurl + json-c behind this header).
 *
 * Contract for every function below unless it says otherwise:
 *   - returns 0 on success or a negative errno (see api_errno_map() for the table);
 *   - `err` may be NULL; when non-NULL it is always filled (zeroed on success) with
 *     the detail a log line needs: HTTP status, Cloudflare error code, curl code, message;
 *   - output structs are written only on success; on failure they are left zeroed and
 *     need no release;
 *   - strings passed in are borrowed for the duration of the call;
 *   - safe to call from many threads at once on one struct api_client.
 *
 * Nothing in this header exposes libcurl or json-c types. Ids are passed unescaped;
 * the client percent-encodes every byte outside [A-Za-z0-9-._~] when it puts an id
 * into a URL path (so "a/b" becomes "a%2Fb").
 */
#ifndef IMAGESFS_API_H
#define IMAGESFS_API_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits of the Images API, shared by the client, the emulator and the filesystem. */
#define API_MAX_IMAGE_BYTES (10 * 1024 * 1024) /* 10 MB upload limit */
#define API_MAX_ID_LEN 1024                    /* custom id, bytes */
#define API_MAX_METADATA_BYTES 1024            /* serialized metadata object */
#define API_MAX_CREATOR_LEN 1024
#define API_MAX_FILENAME_LEN 255
#define API_MAX_VARIANTS 100
#define API_MAX_VARIANT_ID_LEN 99
#define API_MAX_KEY_NAME_LEN 20

struct api_err {
	long http_status;  /* 0 when no HTTP response was received */
	int cf_code;       /* first Cloudflare error code of the envelope, 0 if none */
	int curl_code;     /* CURLcode as int, 0 if the transfer itself succeeded */
	int attempts;      /* number of HTTP attempts made (retries + 1) */
	char message[256]; /* Cloudflare message or curl error text, NUL-terminated */
};

struct api_config {
	const char *base_url;   /* "https://api.cloudflare.com/client/v4", no trailing '/' needed */
	const char *account_id; /* <= 32 chars */
	/* Credentials: either token (Authorization: Bearer) or auth_email + auth_key. */
	const char *token;
	const char *auth_email;
	const char *auth_key;
	const char *ca_file;       /* optional CA bundle for https; verification is always on */
	long connect_timeout_ms;   /* 0 = default 10000 */
	long low_speed_time_s;     /* abort a transfer below 1 byte/s for this long; 0 = default 30 */
	long request_timeout_ms;   /* whole-request cap, 0 = default 120000 */
	int max_attempts;          /* attempts per idempotent request, 0 = default 5 */
	long retry_budget_ms;      /* total time spent retrying one call, 0 = default 30000 */
	double rate_per_sec;       /* client-side token bucket; 0 = default (3.6/s with burst 120:
				    * never more than Cloudflare's 1200 per 300 s), <0 = off */
	int rate_burst;            /* bucket size; 0 = one second's worth of rate_per_sec, or 120
				    * with the default rate */
	int verbose;               /* libcurl trace to stderr with secrets redacted */
	const char *user_agent;    /* optional */
	/* Images batch API (upload, details, edit, delete, list v2, direct upload v2 go to
	 * batch_url with short-lived batch tokens, outside the global limit). NULL = off. */
	const char *batch_url;     /* origin, e.g. "https://batch.imagedelivery.net" */
	int batch_tokens;          /* tokens used at once; 0 = default (API_DEF_BATCH_TOKENS) */
	double batch_rate;         /* per-token client limit in requests/s; 0 = default (180/s
				    * with a burst of 20: never over 200 in any second) */
	/* Receives one-line notices the user should see (the batch API given up, and why).
	 * Never called with a secret. Nullable; may be called from any thread. */
	void (*log_fn)(void *arg, const char *line);
	void *log_arg;
};

struct api_client;

/* Creates a client. Copies everything it keeps from cfg. curl_global_init() must
 * have been called once by the program (api_global_init() does it). */
int api_global_init(void);
void api_global_cleanup(void);
int api_client_new(const struct api_config *cfg, struct api_client **out);
void api_client_free(struct api_client *c);

/* ---- images ---------------------------------------------------------------- */

struct api_image {
	char *id;
	char *filename;      /* NULL if absent */
	char *creator;       /* NULL if unset */
	char *meta_json;     /* compact JSON text of `meta`; NULL if absent/null */
	int require_signed_urls;
	int draft;
	int64_t uploaded_ms; /* Unix epoch milliseconds of `uploaded`; 0 if absent */
	char **variants;     /* delivery URLs */
	size_t n_variants;
};
/* Frees the members and zeroes the struct (not the struct itself). */
void api_image_release(struct api_image *img);

/* Called once per image while listing. `img` is borrowed: valid only during the call.
 * Returning non-zero stops the listing; that value is returned by the list call. */
typedef int (*api_image_cb)(const struct api_image *img, void *arg);

struct api_list_opts {
	int per_page;            /* 0 = largest the endpoint allows (v2: 10000) */
	const char *creator;     /* NULL = any; "" = images without creator */
	int sort_asc;            /* v2 only: 1 = ascending by upload time */
	int max_pages;           /* 0 = all pages */
};

/* Lists every image with v2 (continuation_token), following all pages.
 * `requests` (nullable) receives the number of list requests made. */
int api_images_list(struct api_client *c, const struct api_list_opts *opts, api_image_cb cb,
		    void *arg, int *requests, struct api_err *err);
/* Lists one v1 page (page >= 1). `*n_out` receives how many images were on it. */
int api_images_list_v1(struct api_client *c, int page, int per_page, const char *creator,
		       api_image_cb cb, void *arg, size_t *n_out, struct api_err *err);

int api_image_get(struct api_client *c, const char *id, struct api_image *out,
		  struct api_err *err);

struct api_upload {
	const char *id;            /* custom id, NULL = let the server generate one */
	int fd;                    /* file to stream as the `file` part, or -1 */
	const char *filename;      /* name sent for the file part; NULL = "file" */
	const char *url;           /* upload by URL instead of fd (exactly one of fd/url) */
	const char *metadata_json; /* JSON object text, NULL = none */
	const char *creator;       /* NULL = none */
	int require_signed_urls;   /* -1 = omit, 0 = "false", 1 = "true" */
};
/* Uploads an image. The file is streamed from fd (read from offset 0 with pread; not
 * loaded in memory). With a custom id, a retried upload whose first response was lost
 * is recognised (5409 on retry + matching image) and reported as success. */
int api_image_upload(struct api_client *c, const struct api_upload *up, struct api_image *out,
		     struct api_err *err);

struct api_image_patch {
	const char *metadata_json; /* NULL = unchanged; "{}" clears */
	const char *creator;       /* NULL = unchanged */
	int require_signed_urls;   /* -1 = unchanged */
};
int api_image_edit(struct api_client *c, const char *id, const struct api_image_patch *p,
		   struct api_image *out, struct api_err *err);
int api_image_delete(struct api_client *c, const char *id, struct api_err *err);

/* Streams the blob into fd (written with write() from the fd's current offset).
 * Fails with -EFBIG past max_bytes (0 = API_MAX_IMAGE_BYTES + slack), -EIO when the body
 * is shorter than Content-Length. `*size_out` (nullable) receives the bytes written.
 * `content_type` (nullable, size ct_len) receives the Content-Type. On failure the fd may
 * hold partial data: the caller discards it. */
int api_image_blob(struct api_client *c, const char *id, int fd, uint64_t max_bytes,
		   uint64_t *size_out, char *content_type, size_t ct_len, struct api_err *err);

/* ---- signing keys ------------------------------------------------------------ */

struct api_key {
	char *name;
	char *value;
};
struct api_key_list {
	struct api_key *keys;
	size_t n;
};
void api_key_list_release(struct api_key_list *l);
int api_keys_list(struct api_client *c, struct api_key_list *out, struct api_err *err);
/* PUT and DELETE return every key the account has afterwards; out is nullable. */
int api_key_put(struct api_client *c, const char *name, struct api_key_list *out,
		struct api_err *err);
int api_key_delete(struct api_client *c, const char *name, struct api_key_list *out,
		   struct api_err *err);

/* ---- signed delivery URLs (api_sign.c) ------------------------------------------ */

#define API_SIG_HEX_LEN 64        /* hex of an HMAC-SHA256 */
#define API_MAX_KEY_VALUE_LEN 256 /* cap on a signing key's value */
#define API_MAX_SIGNED_URL 4096   /* cap on a URL to sign, token included */

/* hex = lowercase hex of HMAC-SHA256(key bytes, msg bytes). -EINVAL for a key over
 * API_MAX_KEY_VALUE_LEN, -EIO if libcrypto fails. Pure, thread-safe. */
int api_sign_hex(const char *key, const char *msg, char hex[API_SIG_HEX_LEN + 1]);
/* Signs a delivery URL (absolute, no query or fragment) for expiry exp (Unix seconds):
 * out = url + "?exp=<exp>&sig=<hex>", the MAC taken over "<url path>?exp=<exp>" as
 * Cloudflare documents. -EINVAL (not absolute, has a query, exp < 0), -ENAMETOOLONG (does
 * not fit outsz or API_MAX_SIGNED_URL). out is written only on success. */
int api_sign_url(const char *url, const char *key, int64_t exp, char *out, size_t outsz);

/* Fetches a delivery URL (absolute, signed or not) into fd like api_image_blob: streamed,
 * capped at max_bytes (0 = API_MAX_IMAGE_BYTES + slack), retried like a GET. No
 * credentials are sent, and the request does not count toward the client's rate limiter
 * or api_counters. 403 -> -EACCES, 404 -> -ENOENT (api_errno_map). */
int api_delivery_get(struct api_client *c, const char *url, int fd, uint64_t max_bytes,
		     uint64_t *size_out, struct api_err *err);

/* ---- stats ------------------------------------------------------------------- */

struct api_stats {
	int64_t allowed;
	int64_t current;
};
int api_stats_get(struct api_client *c, struct api_stats *out, struct api_err *err);

/* ---- variants ---------------------------------------------------------------- */

struct api_variant {
	char *id;
	char *options_json; /* compact JSON text of `options` */
	int never_require_signed_urls;
};
struct api_variant_list {
	struct api_variant *v;
	size_t n;
};
void api_variant_release(struct api_variant *v);
void api_variant_list_release(struct api_variant_list *l);
int api_variants_list(struct api_client *c, struct api_variant_list *out, struct api_err *err);
int api_variant_get(struct api_client *c, const char *id, struct api_variant *out,
		    struct api_err *err);
/* options_json: a JSON object text; never_require: -1 = omit, 0/1. out is nullable. */
int api_variant_create(struct api_client *c, const char *id, const char *options_json,
		       int never_require, struct api_variant *out, struct api_err *err);
int api_variant_edit(struct api_client *c, const char *id, const char *options_json,
		     int never_require, struct api_variant *out, struct api_err *err);
int api_variant_delete(struct api_client *c, const char *id, struct api_err *err);

/* ---- errors ------------------------------------------------------------------ */

/* The one table that maps an API failure to an errno (always returns a positive errno):
 *   curl timeout -> ETIMEDOUT; other curl/transport failure -> EIO (also after retries);
 *   9106/6003/10000, 401/403 -> EACCES; 404, 5404, 5401, 7003 -> ENOENT;
 *   5409, 409 -> EEXIST; 5413, 413 -> EFBIG; 5455/5415, 400, 5400 -> EINVAL;
 *   971, 429, 502/503/504 after retries -> EAGAIN; 5453 -> ENOSPC; anything else -> EIO. */
int api_errno_map(long http_status, int cf_code, int curl_code);

/* Formats "HTTP 404, code 5404: Image not found" into buf; returns buf. */
const char *api_err_str(const struct api_err *err, char *buf, size_t len);

/* Checks a custom id against the API's rules (<= 1024 bytes, not empty, no leading or
 * trailing '/', not UUID-shaped, no NUL/control characters, valid UTF-8) and refuses the
 * names of routes under /images/v1/ ("keys", "stats", "variants", ...), which an image could
 * not be read back under. 0 or -EINVAL. */
int api_custom_id_valid(const char *id);

/* Counters for tests and benchmarks (monotonic, whole client). */
struct api_counters {
	uint64_t requests;   /* HTTP requests sent, including retries */
	uint64_t retries;
	uint64_t throttled_ms; /* time spent waiting in the client-side rate limiter */
	/* Per host, one place: `requests` above is the sum of these two. */
	uint64_t global_requests; /* HTTP requests sent to the global API (base_url) */
	uint64_t batch_requests;  /* HTTP requests sent to the batch host */
	uint64_t batch_throttled_ms; /* time waiting in the per-token limiters */
};
void api_counters_get(struct api_client *c, struct api_counters *out);

/* Read-only view of the batch token pool (for status reporting). */
enum { API_BATCH_OFF, API_BATCH_ON, API_BATCH_FALLBACK };
struct api_batch_snapshot {
	int state;               /* API_BATCH_OFF / _ON / _FALLBACK (given up: global API) */
	unsigned tokens_live;    /* tokens held that have not expired */
	uint64_t tokens_fetched; /* tokens obtained since the client was created */
};
void api_batch_snapshot(struct api_client *c, struct api_batch_snapshot *out);
/* ---- activity: what the client did, for the mount's status file ----------------------
 * Counted where the requests happen (api_http.c, api_image_upload) and read with one
 * snapshot call that takes no network and no lock the requests wait on for long. */
enum api_op {
	API_OP_LIST,
	API_OP_GET,
	API_OP_BLOB,
	API_OP_UPLOAD,
	API_OP_EDIT,
	API_OP_DELETE,
	API_OP_STATS,
	API_OP_VARIANTS,
	API_OP_KEYS,
	API_OP_OTHER,
	API_OP_N
};
#define API_ACT_MAX_HOSTS 8 /* hosts counted by name; later ones count under "other" */
/* Stable lowercase name of an operation ("list", "upload", ...). */
const char *api_op_name(int op);

struct api_activity {
	uint64_t requests, retries, throttled_ms; /* as in struct api_counters */
	uint64_t http_429;			  /* attempts answered 429 */
	uint64_t bytes_up, bytes_down;		  /* bodies sent / received, every attempt */
	uint64_t per_op[API_OP_N];		  /* attempts by operation */
	size_t n_hosts;
	struct {
		char name[128]; /* "host:port" as in the URL */
		uint64_t requests;
	} hosts[API_ACT_MAX_HOSTS + 1]; /* the last row is "other" when more hosts were seen */
	uint64_t uploads_done, uploads_failed; /* api_image_upload calls that ended so */
	uint64_t uploads_in_flight;	       /* api_image_upload calls running now */
	uint64_t waiting;		       /* requests waiting for the rate limiter now */
	int limited;			       /* 0: the client-side limiter is off */
	double budget_left;		       /* requests that may start now without waiting */
	double budget_burst, budget_rate;      /* bucket size; refill per second */
};
/* Fills out with a consistent-enough snapshot (counters are read one by one). */
void api_activity_get(struct api_client *c, struct api_activity *out);

#endif

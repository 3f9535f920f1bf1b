/*
 * emu.h - internal interfaces of imagesfs-emulator (a local Cloudflare Images API).
 *
 * Not a public header: every emu_*.c file includes it. The design note is in emu_main.c.
 * Conventions: functions that can fail return 0 or -errno; "borrowed" pointers stay owned by
 * the callee; locks are named at the fields they guard.
 */
#ifndef IMAGESFS_EMU_H
#define IMAGESFS_EMU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <microhttpd.h>

/* ---- limits (named caps on everything that grows from network input) ---- */
#define EMU_MAX_IMAGE_BYTES (10u * 1024u * 1024u) /* 10 MB file limit of the real API */
#define EMU_UPLOAD_BODY_CAP (12u * 1024u * 1024u) /* multipart body: 10 MB + slack */
#define EMU_JSON_BODY_CAP (64u * 1024u)		  /* PATCH/POST JSON bodies and admin */
#define EMU_MAX_ID_BYTES 1024u
#define EMU_MAX_META_BYTES 1024u
#define EMU_MAX_CREATOR_BYTES 1024u
#define EMU_MAX_FILENAME_BYTES 255u
#define EMU_MAX_VARIANTS 100u
#define EMU_MAX_VARIANT_ID 99u
#define EMU_MAX_VARIANT_DIM 12000
#define EMU_MAX_KEYS 100u
#define EMU_MAX_KEY_NAME 20u
#define EMU_MAX_SEGMENTS 16u
#define EMU_MAX_DRAFTS 10000u /* pending direct uploads (expired ones are swept first) */
#define EMU_DRAFT_MIN_S 120   /* direct upload expiry: now + 2 min .. now + 6 h */
#define EMU_DRAFT_MAX_S 21600
#define EMU_DRAFT_DEFAULT_S 1800
#define EMU_DRAFT_SLACK_S 10 /* tolerance on both expiry bounds for time in transit */
#define EMU_MAX_QUERY_PARAMS 32u
#define EMU_DEFAULT_ACCOUNT "0123456789abcdef0123456789abcdef"
#define EMU_DEFAULT_TOKEN "imagesfs-demo-token"

/* ---- growable buffer ---- */
/*
 * Bytes with an optional cap (max == 0: unbounded). Appends never fail loudly: on overflow
 * or ENOMEM the buffer sets err (-EFBIG / -ENOMEM) and ignores further appends, so builders
 * check once at the end. data is always NUL-terminated when non-NULL.
 */
struct emu_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	int err;
};

void emu_buf_init(struct emu_buf *b, size_t max);
void emu_buf_release(struct emu_buf *b);
void emu_buf_add(struct emu_buf *b, const void *p, size_t n);
void emu_buf_puts(struct emu_buf *b, const char *s);
void emu_buf_printf(struct emu_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends n bytes of s as a quoted JSON string (control chars as \u00XX). */
void emu_buf_json_str(struct emu_buf *b, const char *s, size_t n);
/* Hands the data to the caller (free()); the buffer is left empty. */
char *emu_buf_steal(struct emu_buf *b, size_t *len);

/* ---- small utilities (emu_util.c) ---- */
int64_t emu_now_ms(void);
/* "2022-01-31T16:39:28.458Z"; out must hold 64 bytes. */
void emu_format_time(int64_t ms, char out[64]);
/* Percent-decodes src[0..n) into a new NUL-terminated string; plus_is_space for queries.
 * Returns NULL on a bad escape, on an embedded NUL or on ENOMEM. */
char *emu_pct_decode(const char *src, size_t n, bool plus_is_space, size_t *outlen);
bool emu_utf8_valid(const char *s, size_t n);
bool emu_has_ctl(const char *s, size_t n);
bool emu_is_uuid(const char *s, size_t n);
/* 1 to max characters of [A-Za-z0-9] (account ids, key names, variant ids). */
bool emu_alnum_ok(const char *s, size_t n, size_t max);
/* RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)) to epoch ms; 0 or -EINVAL. */
int emu_parse_rfc3339(const char *s, size_t n, int64_t *ms);
void emu_random_bytes(void *buf, size_t n);
void emu_uuid4(char out[37]);
/* base64url without padding of n bytes; out must hold 4*n/3+4 bytes. */
void emu_base64url(const unsigned char *in, size_t n, char *out);
/* Strict decimal parse of the whole string; 0 or -EINVAL. */
int emu_parse_long(const char *s, long min, long max, long *out);
/* Compact json-c serialization without slash escaping (borrowed string). */
const char *emu_json_compact(struct json_object *o, size_t *len);
/* Parses a whole buffer as JSON; NULL on syntax error or trailing garbage. */
struct json_object *emu_json_parse(const char *s, size_t n);
/* Writes data to dir/name atomically: temp file, fsync (if do_sync), rename, dir fsync. */
int emu_write_atomic(int dirfd, const char *name, const void *a, size_t alen, const void *b,
		     size_t blen, bool do_sync);

/* ---- operations (one counter each, names as in /__emulator/stats) ---- */
enum emu_op {
	EMU_OP_LIST_V1,
	EMU_OP_LIST_V2,
	EMU_OP_UPLOAD,
	EMU_OP_GET,
	EMU_OP_EDIT,
	EMU_OP_DELETE,
	EMU_OP_BLOB,
	EMU_OP_KEYS_LIST,
	EMU_OP_KEYS_PUT,
	EMU_OP_KEYS_DELETE,
	EMU_OP_STATS,
	EMU_OP_VARIANTS_LIST,
	EMU_OP_VARIANTS_GET,
	EMU_OP_VARIANTS_CREATE,
	EMU_OP_VARIANTS_EDIT,
	EMU_OP_VARIANTS_DELETE,
	EMU_OP_DIRECT_UPLOAD,
	EMU_OP_DIRECT_FILE,
	EMU_OP_BATCH_TOKEN,
	EMU_OP_OTHER,
	EMU_OP_COUNT
};

extern const char *const emu_op_names[EMU_OP_COUNT];
/* Returns the op for a name, -1 when unknown ("*" is handled by callers). */
int emu_op_from_name(const char *name);

/* ---- request / reply ---- */
struct emu_hdr {
	char name[32];
	char value[64];
};

enum emu_fault_mode {
	EMU_FAULT_NONE,
	EMU_FAULT_STATUS,
	EMU_FAULT_STALL,
	EMU_FAULT_CLOSE,
	EMU_FAULT_TRUNCATE
};

struct emu_blob;

/* What the handler decided to answer. body is malloc'd unless blob is set (then body points
 * into the blob, which holds one reference). */
struct emu_reply {
	unsigned status;
	const char *ctype;
	char *body;
	size_t len;
	struct emu_blob *blob;
	struct emu_hdr hdrs[6];
	unsigned nhdrs;
	enum emu_fault_mode delivery; /* NONE, CLOSE or TRUNCATE */
	int64_t delay_ms;
	bool ready;
};

struct emu_query {
	char *name;
	char *value;
	size_t vlen;
};

struct emu_req {
	struct MHD_Connection *conn;
	char *uri;  /* raw request target, owned */
	char *path; /* raw path (no query), owned */
	const char *method;
	bool is_api;
	bool is_admin;
	bool is_upload;	  /* /upload/<hash>/<id>: a direct upload URL (no auth) */
	bool is_batch;	  /* /images/v1|v2...: the batch API (batch-token auth, own limit) */
	bool is_delivery; /* <delivery path>/<hash>/<id>/<variant> (emu_deliver.c) */
	bool v2;	  /* the path is under images/v2 */
	enum emu_op op;
	/* decoded path segments after /client/v4/accounts/{acct}/images/, owned */
	char *seg[EMU_MAX_SEGMENTS];
	size_t seglen[EMU_MAX_SEGMENTS];
	size_t nseg;
	char *account; /* decoded account segment or NULL */
	bool route_ok; /* a known route */
	struct emu_query query[EMU_MAX_QUERY_PARAMS];
	size_t nquery;
	bool query_bad;
	struct emu_buf body;
	bool body_overflow;
	bool started;
	bool suspended;
	bool fault_after; /* fault rule to apply after the handler ran */
	struct emu_fault_hit *hit;
	struct emu_reply reply;
};

/* Finds a decoded query parameter (first occurrence); NULL if absent. */
const char *emu_req_query(const struct emu_req *rq, const char *name, size_t *len);
/* Request header (case-insensitive name); NULL if absent. */
const char *emu_req_header(const struct emu_req *rq, const char *name);

/* Reply helpers. The envelope is {"result":..,"success":..,"errors":[..],"messages":[]}. */
void emu_reply_error(struct emu_req *rq, unsigned status, int code, const char *msg);
void emu_reply_errorf(struct emu_req *rq, unsigned status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Starts a success envelope in b; append the result JSON, then call emu_reply_result_end. */
void emu_reply_result_begin(struct emu_buf *b);
void emu_reply_result_end(struct emu_req *rq, struct emu_buf *b);
/* A success envelope whose result is {} (deletes). */
void emu_reply_result_empty(struct emu_req *rq);
/* Plain JSON body (admin endpoints), takes the buffer's data. */
void emu_reply_json_buf(struct emu_req *rq, unsigned status, struct emu_buf *b);
void emu_reply_add_header(struct emu_reply *r, const char *name, const char *value);
void emu_reply_release(struct emu_reply *r);

/* ---- image store (emu_store.c) ---- */
struct emu_blob {
	atomic_uint refs;
	size_t len;
	unsigned char data[];
};

struct emu_blob *emu_blob_new(const void *data, size_t len);
void emu_blob_ref(struct emu_blob *b);
void emu_blob_unref(struct emu_blob *b);

struct emu_image {
	char *id;
	size_t idlen;
	char *filename;
	char *creator; /* NULL when unset */
	char *meta;    /* compact JSON object text, NULL when no metadata */
	bool require_signed;
	bool draft;	       /* direct upload not completed yet: no blob, not in order[] */
	int64_t expires_ms;    /* drafts only: the upload URL stops working then */
	int64_t uploaded_ms;   /* drafts: creation time (also the persistence file name) */
	uint64_t seq;	       /* position key of the upload-time index (0 for drafts) */
	struct emu_blob *blob; /* NULL for drafts */
	struct emu_image *hnext;
};

struct emu_persist;

/* One entry of the upload-time index; im == NULL marks a deleted image (tombstone). */
struct emu_slot {
	uint64_t seq;
	struct emu_image *im;
};

struct emu_store {
	pthread_rwlock_t lock;
	struct emu_image **buckets; /* guarded by lock */
	size_t nbuckets;	    /* guarded by lock */
	size_t count;		    /* images + drafts in the hash, guarded by lock */
	size_t ndrafts;		    /* guarded by lock */
	struct emu_slot *order;	    /* sorted by seq (= upload time), guarded by lock */
	size_t norder;		    /* guarded by lock */
	size_t corder;		    /* guarded by lock */
	size_t ndead;		    /* tombstones in order[], guarded by lock */
	uint64_t next_seq;	    /* guarded by lock */
	int64_t last_ms;	    /* guarded by lock */
	long allowed;
	struct emu_persist *persist; /* NULL: memory only */
};

/* Variant names sorted, plus the prefix "<delivery base>/<hash>/" for variants[]. */
struct emu_vnames {
	char **names;
	size_t n;
	const char *prefix;
	char *prefix_owned; /* freed by emu_vnames_release */
};

int emu_store_init(struct emu_store *s, long allowed);
void emu_store_release(struct emu_store *s);
void emu_image_free(struct emu_image *im);
/* Inserts im (taking ownership on success and on -EIO): assigns uploaded_ms/seq and
 * serializes the stored image into out. -EEXIST on a duplicate id, -ENOSPC when the account
 * is full, -EIO when persisting failed (the image is then removed again and freed). */
int emu_store_insert(struct emu_store *s, struct emu_image *im, const struct emu_vnames *vn,
		     struct emu_buf *out);
/* Inserts n images in one locked pass (seeding); all or nothing (-EEXIST/-ENOSPC). Takes
 * ownership of every image on success; ms_out[i] receives each upload time. */
int emu_store_insert_many(struct emu_store *s, struct emu_image **ims, size_t n, int64_t *ms_out);
/* Inserts a loaded image keeping its uploaded_ms (persist load); index sorted later. A draft
 * with the same id as a loaded image is unlinked and handed back in *displaced (caller frees
 * it and removes its file); -EEXIST for other duplicates. */
int emu_store_load_one(struct emu_store *s, struct emu_image *im, struct emu_image **displaced);
void emu_store_load_done(struct emu_store *s);
/* Number of images, drafts excluded. */
size_t emu_store_count(struct emu_store *s);
/* Inserts a draft (im->draft and expires_ms set, no blob), taking ownership on success and
 * on -EIO. Expired drafts with the same id are dropped first. -EEXIST, -ENOSPC (account
 * full), -EDQUOT (EMU_MAX_DRAFTS pending), -EIO (persisting failed; removed and freed). */
int emu_store_insert_draft(struct emu_store *s, struct emu_image *im);
/* State of the draft behind an upload URL; an expired draft is removed. */
enum emu_draft_state { EMU_DRAFT_ABSENT, EMU_DRAFT_LIVE, EMU_DRAFT_EXPIRED, EMU_DRAFT_USED };
enum emu_draft_state emu_store_draft_state(struct emu_store *s, const char *id, size_t idlen);
/* Drafts held in memory (expired ones not yet removed included). */
size_t emu_store_draft_count(struct emu_store *s);
/* Test hook: makes every pending draft expire now (memory only; removal stays lazy). Returns
 * how many were pending. */
size_t emu_store_expire_drafts(struct emu_store *s);
/* Completes draft id with blob (a reference is taken) and filename (copied), giving it a new
 * upload time; serializes the image into out. -ENOENT (absent), -ETIMEDOUT (expired: the
 * draft is removed), -EALREADY (not a draft: URL used), -ENOSPC, -ENOMEM, -EIO (persisting
 * failed: the image is removed). */
int emu_store_complete_draft(struct emu_store *s, const char *id, size_t idlen,
			     struct emu_blob *blob, const char *filename,
			     const struct emu_vnames *vn, struct emu_buf *out);
/* Serializes one image as JSON into out; -ENOENT if absent (an expired draft is removed). */
int emu_store_get_json(struct emu_store *s, const char *id, size_t idlen,
		       const struct emu_vnames *vn, struct emu_buf *out);
struct emu_patch {
	struct json_object *meta; /* borrowed; non-NULL: replace ({} clears) */
	bool set_signed;
	bool require_signed;
	bool set_creator;
	const char *creator; /* NULL clears */
};
/* Applies a patch; -ENOENT, -EPERM (custom id made private). Serializes the result. */
int emu_store_edit(struct emu_store *s, const char *id, size_t idlen, const struct emu_patch *p,
		   const struct emu_vnames *vn, struct emu_buf *out);
int emu_store_delete(struct emu_store *s, const char *id, size_t idlen);
/* Returns a blob reference (caller unrefs) or NULL if absent or a draft. */
struct emu_blob *emu_store_get_blob(struct emu_store *s, const char *id, size_t idlen);
/* emu_store_get_blob plus the image's requireSignedURLs (set only when found; may be NULL). */
struct emu_blob *emu_store_get_delivery(struct emu_store *s, const char *id, size_t idlen,
					bool *require_signed);
#define EMU_FILTER_MAX 5
#define EMU_FILTER_MAX_DEPTH 5
#define EMU_FILTER_MAX_VALUES 10

/* One v2 metadata filter (emu_filter.c). */
struct emu_mfilter {
	char *path[EMU_FILTER_MAX_DEPTH];
	size_t depth;
	int op;
	int type;
	char *values[EMU_FILTER_MAX_VALUES];
	double nums[EMU_FILTER_MAX_VALUES];
	size_t nvalues;
};

struct emu_filters {
	struct emu_mfilter f[EMU_FILTER_MAX];
	size_t n;
};

/* Parses every meta.* query parameter; false with a 400/5400 reply when invalid. */
bool emu_filters_parse(struct emu_req *rq, struct emu_filters *fs);
void emu_filters_release(struct emu_filters *fs);
/* True when metadata (compact JSON text or NULL) passes every filter. */
bool emu_filters_match(const struct emu_filters *fs, const char *meta);

struct emu_list_args {
	const struct emu_filters *filters; /* v2 metadata filters, NULL: none */
	const char *creator;		   /* NULL: no filter; "": images without creator */
	size_t per_page;
	size_t page;	/* v1, 1-based */
	bool asc;	/* v2 */
	bool has_after; /* v2 continuation */
	uint64_t after_seq;
};
/* v1: writes the JSON array of images. v2: writes the array and sets *next_seq (0 = end). */
void emu_store_list_v1(struct emu_store *s, const struct emu_list_args *a,
		       const struct emu_vnames *vn, struct emu_buf *out);
void emu_store_list_v2(struct emu_store *s, const struct emu_list_args *a,
		       const struct emu_vnames *vn, struct emu_buf *out, uint64_t *next_seq);
/* Persistence record of image (id, uploaded_ms): header JSON line into hdr and a blob
 * reference (caller unrefs). -ENOENT when that image is no longer stored. */
int emu_store_record(struct emu_store *s, const char *id, size_t idlen, int64_t uploaded_ms,
		     struct emu_buf *hdr, struct emu_blob **blob);
void emu_image_to_json(const struct emu_image *im, const struct emu_vnames *vn,
		       struct emu_buf *out);

/* ---- persistence (emu_persist.c) ---- */
/* Opens (creating) the data dir, checks/records the account id (*account may be replaced by
 * the stored one when account_given is false). */
int emu_persist_open(const char *dir, char **account, bool account_given, struct emu_persist **out);
void emu_persist_close(struct emu_persist *p);
int emu_persist_load_images(struct emu_persist *p, struct emu_store *s);
/* Brings the file of image (id, uploaded_ms) in line with the store (write or unlink). */
int emu_persist_sync_image(struct emu_persist *p, struct emu_store *s, const char *id, size_t idlen,
			   int64_t uploaded_ms, bool do_sync);
int emu_persist_write_doc(struct emu_persist *p, const char *name, const char *json, size_t len);
/* Reads a JSON document (keys.json / variants.json); NULL if absent. -errno via *err. */
struct json_object *emu_persist_read_doc(struct emu_persist *p, const char *name, int *err);
void emu_persist_flush(struct emu_persist *p);

/* ---- signing keys (emu_keys.c) ---- */
struct emu_key {
	char name[EMU_MAX_KEY_NAME + 1];
	char value[48];
};

struct emu_keys {
	pthread_mutex_t lock;
	struct emu_key *keys; /* guarded by lock */
	size_t n;	      /* guarded by lock */
	struct emu_persist *persist;
};

int emu_keys_init(struct emu_keys *k, struct emu_persist *p);
void emu_keys_release(struct emu_keys *k);
/* Copies up to max keys (the account's current ones) into out; returns how many. */
size_t emu_keys_snapshot(struct emu_keys *k, struct emu_key *out, size_t max);

/* ---- variants (emu_variants.c) ---- */
struct emu_variant {
	char id[EMU_MAX_VARIANT_ID + 1];
	char fit[16];	   /* "" when unset */
	char metadata[16]; /* "" when unset */
	long width;	   /* 0 when unset */
	long height;	   /* 0 when unset */
	long browser_ttl;  /* 0 when unset */
	bool never_require_signed;
};

struct emu_variants {
	pthread_mutex_t lock;
	struct emu_variant *v; /* sorted by id, guarded by lock */
	size_t n;	       /* guarded by lock */
	struct emu_persist *persist;
};

int emu_variants_init(struct emu_variants *vs, struct emu_persist *p);
void emu_variants_release(struct emu_variants *vs);
/* Snapshot of variant names for image serialization; free with emu_vnames_release.
 * prefix is borrowed and must outlive the snapshot. */
int emu_variants_names(struct emu_variants *vs, const char *prefix, struct emu_vnames *out);
/* Copy of variant id (false when absent). */
bool emu_variants_find(struct emu_variants *vs, const char *id, size_t idlen,
		       struct emu_variant *out);
void emu_vnames_release(struct emu_vnames *vn);

/* ---- multipart (emu_multipart.c) ---- */
struct emu_part {
	char *name;	  /* owned */
	char *filename;	  /* owned, NULL when the part has none */
	const char *data; /* borrowed from the body */
	size_t len;
};

struct emu_form {
	struct emu_part *parts;
	size_t n;
};

/* Extracts the boundary of a multipart/form-data Content-Type; -EINVAL if not multipart
 * form data, -EBADMSG for a missing/bad boundary. */
int emu_multipart_boundary(const char *ctype, char *out, size_t outsz);
/* Parses body (which must outlive the form). -EBADMSG with a reason in *why. */
int emu_multipart_parse(const char *body, size_t len, const char *boundary, struct emu_form *form,
			const char **why);
void emu_form_release(struct emu_form *form);

/* ---- sniffing (emu_sniff.c) ---- */
/* "image/png" etc., NULL when not a supported image. */
const char *emu_sniff(const unsigned char *p, size_t n);

/* ---- url fetch (emu_fetch.c) ---- */
/* Fetches url (max bytes cap). 0 with *out; -EFBIG over cap; other -errno with a message. */
int emu_fetch_url(const char *url, size_t cap, struct emu_buf *out, char *err, size_t errsz);

/* ---- faults and rate limit (emu_faults.c) ---- */
struct emu_fault_rule {
	int op; /* -1: any */
	enum emu_fault_mode mode;
	unsigned status;
	long count;   /* remaining hits, -1: unlimited (ratio rules) */
	double ratio; /* 0: always */
	long stall_ms;
	long retry_after;
	bool after;
	uint64_t rng;
	long hits;
};

struct emu_fault_hit {
	enum emu_fault_mode mode;
	unsigned status;
	long stall_ms;
	long retry_after;
	bool after;
};

struct emu_faults {
	pthread_mutex_t lock;
	struct emu_fault_rule *rules; /* guarded by lock */
	size_t n;		      /* guarded by lock */
	long rl_limit;		      /* 0: no rate limit; guarded by lock */
	long rl_window_s;	      /* guarded by lock */
	int64_t rl_window_start;      /* guarded by lock */
	long rl_used;		      /* guarded by lock */
};

int emu_faults_init(struct emu_faults *f);
void emu_faults_release(struct emu_faults *f);
/* Parses a rule (JSON object) or an array of rules and adds them all, or none on error;
 * -EINVAL / -ENOSPC with a message. */
int emu_faults_add_json(struct emu_faults *f, struct json_object *o, char *err, size_t errsz);
int emu_faults_add_spec(struct emu_faults *f, const char *spec, char *err, size_t errsz);
void emu_faults_clear(struct emu_faults *f);
void emu_faults_to_json(struct emu_faults *f, struct emu_buf *out);
/* Consumes a matching rule for op; true with *hit filled when one fires. */
bool emu_faults_match(struct emu_faults *f, enum emu_op op, struct emu_fault_hit *hit);
int emu_faults_set_rate(struct emu_faults *f, long limit, long window_s);
int emu_faults_parse_rate(const char *spec, long *limit, long *window_s);
/* Charges one request against the budget. Returns true when allowed; fills the x-ratelimit
 * headers into r in both cases (when a limit is configured). */
bool emu_faults_rate_charge(struct emu_faults *f, struct emu_reply *r, long *retry_after);
/* Turns rq->reply into the reply of a fault hit (status mode) or marks delivery modes. */
void emu_faults_apply(struct emu_req *rq, const struct emu_fault_hit *hit);

/* ---- delayed responses (emu_delay.c) ---- */
struct emu_delay_item;
struct emu_delay {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct emu_delay_item *head; /* sorted by wake time, guarded by lock */
	bool stopping;		     /* guarded by lock */
	bool started;
	pthread_t thread;
};

int emu_delay_start(struct emu_delay *d);
/* Schedules MHD_resume_connection(conn) in ms; -ESHUTDOWN when stopping (do not suspend). */
int emu_delay_schedule(struct emu_delay *d, struct MHD_Connection *conn, int64_t ms);
/* Resumes every pending connection and stops the thread; later schedules fail. */
void emu_delay_stop(struct emu_delay *d);
/* Frees the queue; only after the HTTP daemon has stopped. */
void emu_delay_release(struct emu_delay *d);

struct emu;

/* ---- batch API (emu_batch.c) ---- */
#define EMU_BATCH_MAX_TOKENS 256u
#define EMU_BATCH_TOKEN_LEN 64u
#define EMU_BATCH_DEFAULT_TTL_S 3600L /* unconfirmed: the real lifetime is not documented */
#define EMU_BATCH_DEFAULT_RATE 200L   /* requests per second per token, as documented */

struct emu_btoken {
	char value[EMU_BATCH_TOKEN_LEN]; /* "" = free slot; secret */
	int64_t expires_mono;		 /* monotonic ms */
	int64_t win_start;		 /* start of the current one-second window, 0 = none */
	long win_used;			 /* requests charged in that window */
};

enum emu_batch_auth { EMU_BATCH_OK, EMU_BATCH_UNKNOWN, EMU_BATCH_EXPIRED, EMU_BATCH_LIMITED };

struct emu_batch {
	pthread_mutex_t lock;
	struct emu_btoken toks[EMU_BATCH_MAX_TOKENS]; /* guarded by lock */
	unsigned long issued;			      /* guarded by lock */
	long ttl_s;				      /* set before the server starts */
	long rate;				      /* 0 = unlimited; set before start */
	bool refuse; /* batch_token answers 403 (--refuse-batch-tokens) */
	atomic_ulong ops[EMU_OP_COUNT];
	atomic_ulong refused; /* batch requests refused 401 (unknown or expired token) */
};

int emu_batch_init(struct emu_batch *b);
void emu_batch_release(struct emu_batch *b);
/* True when the request's batch token is refused (401) or over its rate (429): reply set. */
bool emu_batch_check(struct emu *e, struct emu_req *rq);
/* Whether the batch host serves rq->op. */
bool emu_batch_op_covered(const struct emu_req *rq);
/* Live (unexpired) tokens. */
size_t emu_batch_live(struct emu_batch *b);
/* Test hook: every live token expires now; returns how many were live. */
size_t emu_batch_expire_all(struct emu_batch *b);

/* ---- delivery (emu_deliver.c) and rendering (emu_render.c) ---- */
#define EMU_DELIVERY_PATH "/cdn" /* served path of the default delivery base */
#define EMU_DELIVERY_LOG 256	 /* delivery requests kept for /__emulator/delivery */
#define EMU_MAX_DELIVERY_URL 1024

struct emu_dlog_entry {
	char *uri; /* raw request target, owned */
	unsigned status;
	bool credentials; /* the request carried Authorization or X-Auth-Key */
};

/* Delivery counters and the last EMU_DELIVERY_LOG requests (a ring). */
struct emu_delivery {
	char *base;		/* --delivery-url, NULL: "<origin>/cdn" per request */
	char *path;		/* path prefix served here ("/cdn"), never "" or "/" */
	atomic_ulong requests;	/* every request under path */
	atomic_ulong ok;	/* 200 */
	atomic_ulong denied;	/* 403: token missing, wrong or expired */
	atomic_ulong not_found; /* 404: unknown hash, image or variant */
	pthread_mutex_t lock;
	struct emu_dlog_entry log[EMU_DELIVERY_LOG]; /* guarded by lock */
	size_t log_next;			     /* guarded by lock */
	size_t log_n;				     /* guarded by lock */
};

/* Sets base and path from --delivery-url (NULL: the default); -EINVAL with a message. */
int emu_delivery_init(struct emu_delivery *d, const char *url);
void emu_delivery_release(struct emu_delivery *d);
void emu_delivery_stats_reset(struct emu_delivery *d);
/* Appends ,"delivery":{...} counters to a stats object. */
void emu_delivery_stats_json(struct emu_delivery *d, struct emu_buf *b);
/* {"requests":[{"uri":..,"status":..},..]} oldest first. */
void emu_delivery_log_json(struct emu_delivery *d, struct emu_buf *b);
/* True when path is a delivery path of this emulator. */
bool emu_delivery_match(const struct emu_delivery *d, const char *path);

/* Renders variant v of the image src into out (malloc'd, caller frees) in the source's
 * format; *ctype receives its media type (static string). vips must be initialised
 * (emu_render_init). -EINVAL when the source cannot be decoded, -ENOMEM, -EIO. */
int emu_render(const struct emu_variant *v, const unsigned char *src, size_t len,
	       unsigned char **out, size_t *outlen, const char **ctype);
/* Once per process, before any thread renders. 0 or -EIO. */
int emu_render_init(const char *argv0);
void emu_render_shutdown(void);

/* ---- the server ---- */
struct emu_authkey {
	char *email;
	char *key;
};

struct emu {
	char *account;
	char account_hash[32];
	char **tokens;
	size_t ntokens;
	struct emu_authkey *authkeys;
	size_t nauthkeys;
	long latency_ms;
	long allowed;
	unsigned threads;
	char *data_dir;
	char *listen_host;
	unsigned listen_port;
	struct emu_persist *persist;
	struct emu_store store;
	struct emu_keys keys;
	struct emu_variants variants;
	struct emu_faults faults;
	struct emu_delay delay;
	struct emu_delivery delivery;
	atomic_ulong ops[EMU_OP_COUNT];
	struct emu_batch batch;
	atomic_ulong sent_429;	     /* 429 responses on the global API */
	atomic_ulong sent_429_batch; /* 429 responses on the batch host */
	atomic_ulong connections;    /* TCP connections that carried an API request */
	atomic_bool stopping;
	struct MHD_Daemon *daemon;
};

/* emu_http.c */
int emu_http_start(struct emu *e);
void emu_http_stop(struct emu *e);

/* Handlers: each sets rq->reply. */
void emu_h_images_list_v1(struct emu *e, struct emu_req *rq);
void emu_h_images_list_v2(struct emu *e, struct emu_req *rq);
void emu_h_images_upload(struct emu *e, struct emu_req *rq);
void emu_h_images_get(struct emu *e, struct emu_req *rq);
void emu_h_images_edit(struct emu *e, struct emu_req *rq);
void emu_h_images_delete(struct emu *e, struct emu_req *rq);
void emu_h_images_blob(struct emu *e, struct emu_req *rq);
void emu_h_keys_list(struct emu *e, struct emu_req *rq);
void emu_h_keys_put(struct emu *e, struct emu_req *rq);
void emu_h_keys_delete(struct emu *e, struct emu_req *rq);
void emu_h_stats(struct emu *e, struct emu_req *rq);
void emu_h_variants_list(struct emu *e, struct emu_req *rq);
void emu_h_variants_get(struct emu *e, struct emu_req *rq);
void emu_h_variants_create(struct emu *e, struct emu_req *rq);
void emu_h_variants_edit(struct emu *e, struct emu_req *rq);
void emu_h_variants_delete(struct emu *e, struct emu_req *rq);
void emu_h_direct_upload(struct emu *e, struct emu_req *rq);
void emu_h_direct_file(struct emu *e, struct emu_req *rq);
void emu_h_batch_token(struct emu *e, struct emu_req *rq);
/* GET <delivery path>/<hash>/<id>/<variant> (emu_deliver.c): renders; never rate limited. */
void emu_h_delivery(struct emu *e, struct emu_req *rq);
/* variants[] snapshot whose prefix is "<delivery base>/<hash>/" for this request: the
 * prefix lives in the snapshot (released by emu_vnames_release). */
int emu_delivery_names(struct emu *e, struct emu_req *rq, struct emu_vnames *vn);
/* "http://<host:port>": the request's Host header when it is a plain host[:port], else the
 * listen address (loopback for a wildcard listen). emu_direct.c. */
void emu_self_origin(const struct emu *e, struct emu_req *rq, struct emu_buf *out);
/* Admin (emu_admin.c): everything under /__emulator/. */
void emu_h_admin(struct emu *e, struct emu_req *rq);

/* Shared handler helpers (emu_images.c): false with a 400 reply set when invalid. */
bool emu_check_metadata(struct emu_req *rq, struct json_object *m);
bool emu_check_creator(struct emu_req *rq, const char *c, size_t n);
/* Shared by upload and direct upload (emu_upload.c). Each returns false with a reply set. */
/* Parses the multipart body (415/5415 when not multipart, 400/5400 when malformed). */
bool emu_upload_parse_form(struct emu_req *rq, struct emu_form *form);
/* Text fields id, metadata / metadata[..], requireSignedURLs, creator into im (id NULL when
 * not given); direct: refuses file/url and returns the expiry part (NULL when absent). */
bool emu_upload_text_fields(struct emu_req *rq, const struct emu_form *form, bool direct,
			    struct emu_image *im, const struct emu_part **expiry);
/* Validates a custom id (400/5400). */
bool emu_check_custom_id(struct emu_req *rq, const char *id, size_t n);
/* The reply for a store insert that failed (an upload, a draft, a draft completed):
 * -EEXIST 409/5409, -ENOSPC and -EDQUOT (pending drafts) 403/5453, -EIO 500/5540, else
 * 500/5500. */
void emu_upload_reply_store_error(struct emu_req *rq, int rc);
/* Gives im a new random id (a UUID; im->id NULL when out of memory). */
void emu_upload_new_id(struct emu_image *im);
/* The `file` part of a form as a new blob (size 413/5413, filename, format 415/5455). */
struct emu_blob *emu_upload_file_part(struct emu_req *rq, const struct emu_form *form,
				      char **filename);
/* Parses the request body as a JSON object; replies 400 and returns NULL on failure. */
struct json_object *emu_req_json_object(struct emu_req *rq);

#endif

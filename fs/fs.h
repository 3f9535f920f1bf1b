/*
 * fs.h - internals of mount.imagesfs (libfuse3 low-level API).
 *
 * One struct fs_ctx is built in main() and passed to fuse_session_new() as userdata; every
 * callback reaches it through fuse_req_userdata(). It owns the inode table (fs_node.c), the
 * API client and the blob cache.
 *
 * Locking. fs->lock (a mutex) guards the whole inode table: every struct fs_node field, the
 * hash tables, the listing state and the variant-URL pattern. It is held only for memory
 * work, never across a network call or disk I/O. A struct fs_wstate (the staging state of a
 * file being written) has its own mutex, taken around writes and uploads; the order is
 * always w->lock before fs->lock.
 *
 * Node lifetime. A node is "linked" while it has a name in the table. The kernel holds
 * `nlookup` references (lookup/readdirplus/create/mkdir replies, released by forget) and open
 * handles hold `nopen`. A node is freed only when it is unlinked and both counts are zero
 * (fs_node_maybe_free_locked is the one place that frees), so an inode number the kernel
 * still knows always resolves and a pointer held by a file handle, or by a request on an
 * inode the kernel holds, stays valid across network calls. Nothing ever replaces a node by
 * a copy: a rename moves the node itself (fs_node_move_locked).
 */
#ifndef IMAGESFS_FS_H
#define IMAGESFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"
#include "cache.h"

struct journal; /* journal/journal.h */

/* Fixed inodes. */
#define FS_INO_ROOT 1
#define FS_INO_IMAGES 2
#define FS_INO_VARIANTS 3
#define FS_INO_KEYS 4
#define FS_INO_STATS 5
/* renditions/ (fs_renditions.c); its contents are virtual inodes, see FS_REND_BIT */
#define FS_INO_RENDITIONS 6
#define FS_INO_LAST_FIXED FS_INO_RENDITIONS

#define FS_MAX_DOC_BYTES (64 * 1024) /* cap of a variants/ document written by a user */
#define FS_NEG_TIMEOUT 1.0	     /* seconds a negative lookup is cached by the kernel */
#define FS_STATS_TTL_MS 5000	     /* statfs reuses api_stats_get this long, <= dir_ttl */
/* A listing or remote lookup that failed (server unreachable, timed out, 5xx) is answered
 * with the same error this long, so a tool that asks twice in a row (cp: openat, then stat)
 * or many waiters of one failed listing do not each wait out the network bound again. */
#define FS_FAIL_HOLD_MS 3000
/* One images listing brings at most max(allowed, current) * 1.1 + FS_LIST_MARGIN images
 * (account stats), never more than FS_LIST_CEILING (~1.3 GB of table): see fs_list.c. */
#define FS_LIST_MARGIN 10000
/* Images one listing page brings (v2): below this a stale lookup miss re-lists (fs_images.c). */
#define FS_LIST_ONE_PAGE 10000
#define FS_LIST_CEILING 10000000
/* Hidden attribute of the mount root: counts of FUSE operations served (for tests). */
#define FS_XATTR_OPS "user.imagesfs.ops"

enum fs_kind {
	FS_K_ROOT,
	FS_K_DIR, /* images/ itself and every sub-directory below it */
	FS_K_IMG,
	FS_K_VARDIR,
	FS_K_VAR,
	FS_K_KEYDIR,
	FS_K_KEY,
	FS_K_STATS,
	FS_K_CTLDIR, /* .imagesfs/ (fs_control.c) */
	FS_K_CTL,    /* a control file in it */
	FS_K_RENDROOT, /* renditions/ itself */
};

/* Node flags. */
#define FS_NF_LINKED 0x0001	/* has a name in the table */
#define FS_NF_PENDING 0x0002	/* created here, not uploaded (images) / not created (variants) */
#define FS_NF_SIZE 0x0004	/* size is exact */
#define FS_NF_RSU 0x0008	/* requireSignedURLs */
#define FS_NF_NOFILENAME 0x0010 /* the image has no filename at all */
#define FS_NF_VARRAW 0x0020	/* variant URLs differ from the account pattern: see extra */
#define FS_NF_LOCALDIR 0x0040	/* directory made here (mkdir, or emptied by our own ops) */
#define FS_NF_INVAL 0x0080	/* content changed: next open drops the kernel page cache */
/* FS_NF_KSTALE: the kernel may cache size 0 (unknown) with a timeout, so opens invalidate
 * its attributes; cleared when the kernel forgets the node. */
#define FS_NF_KSTALE 0x0100
/* Images whose filename is the name plus a common extension ("a" uploaded as "a.png") keep
 * the extension's index here instead of a copy of the filename (fs_list.c). */
#define FS_NF_FNEXT_SHIFT 9
#define FS_NF_FNEXT_MASK 0x0E00
/* FS_NF_NAMEHEAP: `name` is a malloc'd string (a rename to a name longer than name_buf). */
#define FS_NF_NAMEHEAP 0x1000
/* Timestamps (fs_times.c): FS_NF_MTIME: mtime_ns holds the file's mtime (from the image's
 * stamp or a utimensat here); without it the mtime is `uploaded`. FS_NF_TIMES: that mtime was
 * set here and is not stored with the image yet (it goes with the next upload; or it stays
 * local: stamp=off, a scratch file, no room in the metadata). */
#define FS_NF_MTIME 0x2000
#define FS_NF_TIMES 0x4000
/* FS_NF_SCRATCH: a local scratch file (a new name beginning with '.', fs_scratch.c): written,
 * read and renamed locally, never uploaded under its own name. Always with FS_NF_PENDING. */
#define FS_NF_SCRATCH 0x8000
/* FS_NF_WB: an upload of this image is journaled, not yet stored (fs_writeback.c). */
#define FS_NF_WB 0x10000
/* FS_NF_UPLOADING: an upload of this image's bytes is running (user.state "uploading"). */
#define FS_NF_UPLOADING 0x20000

struct fs_wstate;

/* Per-image data that most images do not have; NULL when all members would be NULL. */
struct fs_img_extra {
	char *meta;	     /* compact JSON object text, NULL = none */
	char *creator;	     /* NULL = none */
	char *filename;	     /* NULL = basename (or none, see FS_NF_NOFILENAME) */
	char *variants_raw;  /* "url\n"..., only with FS_NF_VARRAW */
	struct fs_wstate *w; /* staging state while being written; not owned (see fs_upload.c) */
	char *fail;	     /* "<ERRNO>: <API message>" of the last failed upload, NULL = none */
	/* An attribute set failed while w lived (a replace in progress, e.g. cp -a onto an
	 * image): the replace fails at close instead of storing the new bytes without the
	 * attribute (cp -a ignores setxattr errors). Cleared with w. */
	int xa_failed;
};

struct fs_node {
	fuse_ino_t ino;
	struct fs_node *parent;
	struct fs_node *next, *prev; /* siblings */
	struct fs_node *ino_next;    /* chain in the inode hash */
	struct fs_node *name_next;   /* chain in the (parent, name) hash */
	union {
		struct fs_node *first_child; /* directories */
		struct fs_img_extra *img;    /* FS_K_IMG */
		char *doc;		     /* FS_K_VAR: document; FS_K_KEY: value + "\n" */
		mode_t ctl_mode;	     /* FS_K_CTL: its mode, from fs_control.c's table */
	} u;
	uint64_t nlookup;
	int64_t uploaded_ms; /* images: version; also the mtime without FS_NF_MTIME */
	int64_t mtime_ns;    /* images with FS_NF_MTIME: mtime, ns since the epoch */
	uint32_t size;	     /* images are at most 10 MB, documents 64 KiB */
	uint32_t gen;	     /* listing generation that last saw this node */
	uint32_t nopen;
	uint32_t flags : 24; /* FS_NF_*; 24 bits and the kind share one word (node < 112 bytes) */
	uint32_t kind : 8;
	/* NUL-terminated basename: name_buf (sized for the name the node was made with), or a
	 * malloc'd string when a rename gave it a longer one (FS_NF_NAMEHEAP). */
	char *name;
	char name_buf[];
};

struct fs_config {
	char *account;
	char *mountpoint;
	char *api_url;
	char *cache_dir;
	char *cache_size;
	char *credentials;
	char *ca_file;
	char *rate_limit;
	char *umask_str;
	char *log_file;
	char *batch;	  /* batch=on|off (NULL = on) */
	char *batch_url;  /* batch host origin; NULL = derived in main.c */
	int batch_tokens; /* 0 = the API's default */

	/* delivery (fs_deliver.c, fs_renditions.c) */
	char *sign_key;	    /* sign_key=: key name, NULL = "default", else the first */
	char *delivery_url; /* delivery_url=: renditions are fetched here, no trailing '/' */
	int url_ttl;	    /* url_ttl=: seconds a signed URL stays valid */

	int rate_burst; /* derived from rate_limit; 0 = the API's default */
	int timeout_s;	/* timeout=: network bound per operation; 0 = the API's defaults */
	int dir_ttl;
	int ro;
	int allow_other;
	int uid, gid; /* -1 = mounting user */
	int foreground;
	int debug;
	char *stamp_str; /* stamp=on|off */
	int stamp_off;	 /* mtimes and sizes are not stored in the images' metadata */
	int writeback; /* -o writeback: uploads after close() returns (fs_writeback.c) */
};

struct fs_listing {
	int64_t fresh_ms; /* monotonic ms of the last successful listing, 0 = never */
	int busy;	  /* a listing is in flight; others wait on fs->list_cond */
	uint32_t gen;
	int64_t fail_ms;  /* monotonic ms of the last failed listing (FS_FAIL_HOLD_MS) */
	int fail_rc;	  /* its -errno */
	/* Refresh requests (.imagesfs/refresh, SIGHUP) made, seen when the last successful
	 * listing started, and seen when the listing in flight started: stale while a request
	 * is newer than the last listing's start. */
	unsigned drops, drops_listed, drops_start;
};

/* The last remote lookup that failed, answered again for FS_FAIL_HOLD_MS. */
struct fs_failed_lookup {
	fuse_ino_t dir;
	char name[256];
	int64_t ms;
	int rc;
};

/* FUSE operations served, for the FS_XATTR_OPS test hook. Relaxed atomics, no lock. */
struct fs_opstats {
	atomic_ullong lookup, getattr, readdir, readdirplus, getxattr, open, inval_attr;
};

struct fs_ctx {
	struct fs_config cfg;
	struct fs_opstats ops;
	struct api_client *api;
	struct cache *cache;
	struct fs_local *local; /* fs_local.c; NULL = learned sizes stay in memory */
	struct journal *journal; /* intents of replace/rename (fs_upload.c); NULL = none */
	struct fuse_session *se;
	mode_t umask;
	uid_t uid;
	gid_t gid;
	double ttl; /* dir_ttl as double, for fuse_entry_param */
	int64_t mount_ms;

	pthread_mutex_t lock;
	pthread_cond_t list_cond; /* signalled when a listing finishes */
	/* Everything below is guarded by lock. */
	struct fs_node **ino_tab;
	size_t ino_buckets, ino_count;
	struct fs_node **name_tab;
	size_t name_buckets, name_count;
	fuse_ino_t next_ino;
	struct fs_node *fixed[FS_INO_LAST_FIXED + 1];
	struct fs_rend *rend; /* renditions/ state (fs_renditions.c), guarded by lock */
	struct fs_listing images, variants, keys;
	struct fs_failed_lookup failed_lookup;
	struct fs_tomb *tombs; /* ids deleted while an images listing is in flight */
	uint64_t n_images;
	char *var_base;	  /* "https://imagedelivery.net/<hash>/" learned from the listing */
	char **var_names; /* variant names of the account-wide URL pattern */
	size_t n_var_names;
	uint32_t var_gen;  /* images.gen when the pattern was learned */
	int64_t statfs_ms; /* monotonic ms of the cached stats, 0 = none fresh */
	struct api_stats statfs_cache; /* last stats: statfs, or the mount-time account check */
	uint32_t skipped_ids; /* listed ids that cannot be shown as paths */
	/* Known images re-checked by GET since the images listing went stale (fs_images.c:
	 * once they cost as much as a listing, the next re-check lists instead). */
	uint32_t rechecks;
	/* Images re-checked by GET lately (a ring): each is not asked again within dir_ttl. */
#define FS_RECHECKED_MAX 64
	struct {
		fuse_ino_t ino;
		int64_t ms;
	} rechecked[FS_RECHECKED_MAX];
	unsigned rechecked_next;
	/* Set by the SIGHUP handler (no lock: async-signal-safe); fs_listing_stale_locked
	 * turns it into a refresh of every listing. */
	atomic_int hup;

	/* Kernel dentry invalidations, sent by their own thread (never from a request
	 * handler: that can deadlock). Guarded by lock. */
	struct fs_inval *inval_head, **inval_tail;
	pthread_cond_t inval_cond;
	pthread_t inval_thread;
	int inval_running, inval_stop;
};

struct fs_inval {
	struct fs_inval *next;
	fuse_ino_t parent;
	char name[];
};

struct fs_tomb {
	struct fs_tomb *next;
	char id[];
};

/* Per-open state, stored in fi->fh. */
enum fs_fh_kind {
	FS_FH_BLOB,
	FS_FH_STAGED,
	FS_FH_BUF,
	FS_FH_DIR,
	FS_FH_CTL,
	FS_FH_REND,
	FS_FH_REND_DIR
};

struct fs_fh {
	int kind;
	int writable;
	struct fs_node *node; /* kept alive by nopen */
	int fd;		      /* FS_FH_BLOB: read-only cache fd, -1 = empty file */
	struct fs_wstate *w;  /* FS_FH_STAGED */
	int ctl;	      /* FS_FH_CTL: index in the control-file table */
	char *buf;	      /* FS_FH_BUF: document; FS_FH_DIR: array of fuse_ino_t */
	size_t len, cap;
	int dirty, is_new;
	fuse_ino_t dir_ino; /* FS_FH_REND_DIR: the directory's own (virtual) inode */
	/* FS_FH_BUF only: guards buf, len, cap and dirty. Requests on one handle can run at
	 * once (pread and write on an O_RDWR fd, close of a dup'd fd while another writes). */
	pthread_mutex_t buf_lock;
};

/* Adds directory entry idx of fh (0 ".", 1 "..", then fh's snapshot) to buf, which has room
 * bytes, as readdirplus does when plus (fs->lock held). Returns the bytes used, 0 when the
 * entry does not fit, (size_t)-1 to skip it (gone since opendir). */
typedef size_t (*fs_dirent_fn)(fuse_req_t req, struct fs_ctx *fs, struct fs_fh *fh, size_t idx,
			       char *buf, size_t room, int plus);

/* ---- fs_log.c ---------------------------------------------------------------- */
enum { FS_LOG_ERR, FS_LOG_WARN, FS_LOG_INFO, FS_LOG_DEBUG };
void fs_log_init(int use_syslog, int debug);
/* Sends log lines to PATH (created 0600, appended) instead of syslog/stderr. Call before
 * any thread starts. 0 or -errno. */
int fs_log_open_file(const char *path);
void fs_log_close_file(void);
void fs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fs_log_debug_enabled(void);
/* One line "imagesfs: cannot OP 'PATH': <api error>" and returns the mapped -errno. The
 * failure is also kept in the error log below. */
int fs_log_api(const char *op, const char *path, int rc, const struct api_err *err);
/* The last FS_ERRLOG_MAX failures (.imagesfs/errors), guarded by the log's own lock. */
#define FS_ERRLOG_MAX 100
struct fs_errlog_entry {
	int64_t wall_ms; /* Unix epoch ms */
	char op[24];
	char path[1040];
	int err; /* positive errno */
	long http_status;
	int cf_code;
	char message[256];
};
/* Copies the kept failures, oldest first, into out (room for FS_ERRLOG_MAX; nullable);
 * returns how many. *total (nullable) receives the failures recorded since the mount. */
size_t fs_errlog_snapshot(struct fs_errlog_entry *out, uint64_t *total);
/* "EINVAL" for EINVAL; "E<number>" for an errno without a name. buf: >= 16 bytes. */
const char *fs_errno_name(int err, char *buf, size_t len);

/* ---- fs_fresh.c: when a listing is stale ------------------------------------- */
int64_t fs_now_ms(void); /* monotonic */
/* Stale: never listed, older than dir_ttl, or dropped (refresh/SIGHUP, applied here). */
int fs_listing_stale_locked(struct fs_ctx *fs, struct fs_listing *l);
/* Seconds the listing stays fresh (0 when stale): a cap on what the kernel may cache. */
double fs_listing_left_locked(struct fs_ctx *fs, const struct fs_listing *l);
#define FS_DROP_IMAGES 1
#define FS_DROP_VARIANTS 2
#define FS_DROP_KEYS 4
#define FS_DROP_ALL 7
/* Marks the listings in mask (FS_DROP_*) stale, and statfs's stats with them. */
void fs_listings_drop_locked(struct fs_ctx *fs, int mask);

/* ---- fs_node.c: inode table (all _locked functions need fs->lock) ------------ */
int fs_table_init(struct fs_ctx *fs);
void fs_table_free(struct fs_ctx *fs);
struct fs_node *fs_node_get_locked(struct fs_ctx *fs, fuse_ino_t ino);
struct fs_node *fs_node_child_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name);
/* Creates and links a node; NULL on allocation failure. */
struct fs_node *fs_node_new_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name,
				   int kind);
/* Removes the name; frees the node too if nothing references it. */
void fs_node_unlink_locked(struct fs_ctx *fs, struct fs_node *n);
/* Moves n to (dir, name) in place: same node, same inode (the kernel and open handles keep
 * their pointers). A node that was unlinked meanwhile is linked again. 0, or -ENOMEM with n
 * unchanged. */
int fs_node_move_locked(struct fs_ctx *fs, struct fs_node *n, struct fs_node *dir,
			const char *name);
/* Like fs_node_unlink_locked for removals the kernel did not ask for (listing sweeps, images
 * found gone, failed creations): also tells the kernel to drop its cached dentry. */
void fs_node_drop_locked(struct fs_ctx *fs, struct fs_node *n);
/* Queues a kernel dentry invalidation of (parent, name), e.g. a cached negative entry of a
 * name that exists again; sent by the invalidation thread. */
void fs_inval_queue_locked(struct fs_ctx *fs, fuse_ino_t parent, const char *name);
int fs_inval_start(struct fs_ctx *fs);
void fs_inval_stop(struct fs_ctx *fs);
void fs_node_forget_locked(struct fs_ctx *fs, struct fs_node *n, uint64_t nlookup);
void fs_node_release_open_locked(struct fs_ctx *fs, struct fs_node *n);
/* Frees n if it is unlinked and unreferenced. */
void fs_node_maybe_free_locked(struct fs_ctx *fs, struct fs_node *n);
struct fs_img_extra *fs_node_extra_locked(struct fs_node *n); /* allocates when missing */
void fs_node_extra_trim_locked(struct fs_node *n);	      /* frees an all-NULL extra */
/* malloc'd image id ("album/a.jpg") of a node below images/, NULL on ENOMEM. */
char *fs_node_id_locked(struct fs_ctx *fs, struct fs_node *n);
/* malloc'd mount-relative path ("images/album/a.jpg") for log lines. */
char *fs_node_path_locked(struct fs_ctx *fs, struct fs_node *n);
int fs_node_in_images(const struct fs_node *n);
void fs_node_attr_locked(struct fs_ctx *fs, const struct fs_node *n, struct stat *st);
double fs_node_attr_timeout_locked(struct fs_ctx *fs, const struct fs_node *n);
/* Entry timeout: dir_ttl, capped for listed names by how long the listing stays fresh. */
double fs_node_entry_timeout_locked(struct fs_ctx *fs, const struct fs_node *n);
/* Attribute timeout of a readdirplus entry (see fs_node.c: FS_NF_KSTALE). */
double fs_node_dirplus_timeout_locked(struct fs_ctx *fs, const struct fs_node *n);
/* Fills e for a reply and counts one lookup. */
void fs_node_entry_locked(struct fs_ctx *fs, struct fs_node *n, struct fuse_entry_param *e);
int fs_name_valid(const char *name);
/* A new name that makes a scratch file: begins with '.' (not "." or ".."). (fs_scratch.c) */
int fs_is_scratch_name(const char *name);
/* Frees the account-wide variant URL pattern (learned and used by fs_list.c). */
void fs_var_free_locked(struct fs_ctx *fs);
/* Frees a handle (fi->fh) and what it owns (fd, buffer); NULL is a no-op. The node's open
 * count is the caller's (fs_node_release_open_locked). */
void fs_fh_free(struct fs_fh *fh);

/* ---- fs_list.c: the images listing ------------------------------------------ */
int fs_images_refresh(struct fs_ctx *fs, int force);
/* Applies an API image to the table (creating nodes for its path). Returns the image node,
 * or NULL when the id cannot be shown as a path. */
struct fs_node *fs_images_apply_locked(struct fs_ctx *fs, const struct api_image *img);
/* Updates an image node's attributes from an API answer (not its name). */
void fs_img_set_locked(struct fs_ctx *fs, struct fs_node *n, const struct api_image *img);
void fs_tomb_add_locked(struct fs_ctx *fs, const char *id);
/* The image's filename (malloc'd), or NULL with *err = -ENODATA (none) / -ENOMEM. */
char *fs_img_filename_locked(const struct fs_node *n, int *err);
/* user.variants text (malloc'd) */
char *fs_img_variants_locked(struct fs_ctx *fs, struct fs_node *n);
void fs_var_names_add_locked(struct fs_ctx *fs, const char *name);
void fs_var_names_del_locked(struct fs_ctx *fs, const char *name);

/* Before lookup, getattr, getxattr or open answer for n (below images/, kept alive by the
 * caller): when the images listing is older than dir_ttl, re-checks n by listing again or by
 * one GET of that image, whichever costs fewer requests (see fs_list.c). 0: n answers
 * (possibly updated; also when the API cannot be reached, from the table); -ENOENT: the
 * image is gone and n left the table. */
int fs_img_recheck(struct fs_ctx *fs, struct fs_node *n);
/* Whether n is a listed name that fs_img_recheck would check now. */
int fs_img_recheck_due_locked(struct fs_ctx *fs, struct fs_node *n);
/* The API says n's image is gone: n (uploaded as `version`) leaves the table unless it was
 * uploaded again or is being written here meanwhile; a sub-directory it empties stays, as
 * one made here. Takes fs->lock. */
void fs_img_drop_gone(struct fs_ctx *fs, struct fs_node *n, int64_t version);

/* ---- fs_blob.c: the bytes and attributes the write paths work from ------------- */
/* Gets a read-only fd on the blob of (id, version) through the cache (downloading once). */
int fs_blob_fd(struct fs_ctx *fs, const char *id, int64_t version, const char *path, int *fd,
	       uint64_t *size);
/* Puts the bytes of fd into the cache as (id, version); best effort. */
void fs_cache_put_fd(struct fs_ctx *fs, const char *id, int64_t version, int fd);
/* Copies src (from offset 0) to dst; 0 or -errno. */
int fs_copy_fd(int src, int dst);
/* The attributes that go with an upload: user metadata (without the stamp), creator,
 * filename, requireSignedURLs and the mtime (has_mtime/mtime_ns). The size of the stamp is
 * that of the uploaded bytes (see fs_upload_stamped). */
struct fs_attrs {
	char *meta, *creator, *filename;
	int rsu;
	int has_mtime;
	int64_t mtime_ns;
};
void fs_attrs_release(struct fs_attrs *a);
int fs_attrs_copy_locked(const struct fs_node *n, struct fs_attrs *a);

/* ---- fs_images.c: lookup and reading ----------------------------------------- */
void fs_img_lookup(fuse_req_t req, struct fs_ctx *fs, struct fs_node *dir, const char *name);

void fs_img_open(fuse_req_t req, struct fs_ctx *fs, struct fs_node *n, struct fuse_file_info *fi);
void fs_img_read(fuse_req_t req, struct fs_ctx *fs, struct fs_fh *fh, size_t size, off_t off);
int fs_img_mkdir(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		 struct fuse_entry_param *e);
int fs_img_rmdir(struct fs_ctx *fs, struct fs_node *dir, const char *name);
int fs_img_unlink(struct fs_ctx *fs, struct fs_node *dir, const char *name);

/* ---- fs_upload.c, fs_rename.c: creating, writing, uploading, replacing, renaming --- */
void fs_img_create(fuse_req_t req, struct fs_ctx *fs, struct fs_node *dir, const char *name,
		   struct fuse_file_info *fi);
/* Opens n for writing (O_TRUNC required for uploaded images). */
int fs_img_open_write(struct fs_ctx *fs, struct fs_node *n, struct fuse_file_info *fi,
		      struct fs_fh **out);
int fs_img_open_staged(struct fs_ctx *fs, struct fs_node *n, struct fs_fh **out);
ssize_t fs_img_write(struct fs_ctx *fs, struct fs_fh *fh, const char *buf, size_t size, off_t off);
int fs_img_truncate(struct fs_ctx *fs, struct fs_fh *fh, off_t size);
int fs_img_read_staged(struct fs_fh *fh, char *buf, size_t size, off_t off, ssize_t *got);
int fs_img_flush(struct fs_ctx *fs, struct fs_fh *fh);
void fs_img_release(struct fs_ctx *fs, struct fs_fh *fh);
int fs_img_rename(struct fs_ctx *fs, struct fs_node *odir, const char *oname, struct fs_node *ndir,
		  const char *nname, unsigned int flags);
/* Uploads image n from url, which the API fetches: a file not uploaded yet goes up with its
 * pending attributes; an uploaded image is replaced by the rules of an O_TRUNC write (old
 * bytes kept locally, uploaded again when the new upload fails). Afterwards the size is
 * unknown until the next open. 0, -EBUSY (being written), or the upload's -errno (logged).
 * n must be pinned by the caller (a request on its inode). */
int fs_img_upload_url(struct fs_ctx *fs, struct fs_node *n, const char *url);
/* Frees a staging state (its fds and staged file); no reference may remain. */
void fs_wstate_free(struct fs_wstate *w);
/* Drops a scratch node's own reference on its staged bytes. Returns the state when that was
 * the last reference (the caller frees it with fs_wstate_free, without fs->lock), else NULL
 * (open handles free it at their last release). */
struct fs_wstate *fs_scratch_detach_locked(struct fs_node *n);

/* ---- fs_stamp.c: the stamp (mtime and size in an image's metadata) ------------ */
/* The metadata object to send for an upload or edit: user (compact JSON, NULL = none) plus
 * the stamp of (mtime, size) unless stamp=off. size < 0 = unknown. *out malloc'd ("{}" when
 * empty); *stamped = 1 when the stamp is in it. With no room for the stamp (metadata set
 * elsewhere near 1024 bytes) the stamp is left out (one log line naming path). 0 or -errno. */
int fs_stamp_meta(struct fs_ctx *fs, const char *user, int has_mtime, int64_t mtime_ns,
		  int64_t size, const char *path, char **out, int *stamped);
/* Applies the stamp in an API answer's metadata to n (mtime, size) and returns the user's
 * part (malloc'd, NULL = none) in *user. A mtime set here and not stored yet wins. */
int fs_stamp_apply_locked(struct fs_node *n, const struct api_image *img, char **user);

/* ---- fs_times.c: mtimes --------------------------------------------------------- */
/* utimensat on an image: local while the file is local or being written (it goes with the
 * upload), else one PATCH. mtime NULL = leave it. 0 or -errno. */
int fs_img_set_mtime(struct fs_ctx *fs, struct fs_node *n, const struct timespec *mtime);
/* Stores a mtime set while an image was open for writing that no upload carried (opened with
 * O_TRUNC, closed unchanged): one PATCH. Best effort (logs failures). */
void fs_times_flush(struct fs_ctx *fs, struct fs_node *n);

/* ---- fs_local.c: sizes and mtimes this host learned, in <cache_dir>/attrs ------- */
/* Loads the record (fs->local); -errno (logged) leaves fs->local NULL. Call once. */
int fs_local_open(struct fs_ctx *fs);
void fs_local_close(struct fs_ctx *fs);
/* Records facts about (id, version): size (< 0 = unknown), mtime (has_mtime). */
void fs_local_put(struct fs_ctx *fs, const char *id, int64_t version, int64_t size, int has_mtime,
		  int64_t mtime_ns);
/* Gives n the size and mtime recorded for (id, version) that it does not have yet. */
void fs_local_apply_locked(struct fs_ctx *fs, struct fs_node *n, const char *id, int64_t version);

/* ---- fs_scratch.c: local scratch files ("." names in images/) ------------------- */
/* n is a local scratch file (never uploaded under its name). */
int fs_node_is_scratch_locked(const struct fs_node *n);
/* Drops every scratch file still in the table (at unmount), one log line each. */
void fs_scratch_drop_all(struct fs_ctx *fs);

/* ---- fs_writeback.c: -o writeback ---------------------------------------------- */
#define FS_WB_DRAIN_MS 60000		 /* a clean unmount waits this long for pending uploads */
#define FS_SYNC_WAIT_MS (10 * 60 * 1000) /* .imagesfs/sync waits at most this long */
/* A synchronous upload or rename waits at most this long for an unfinished journal entry of
 * the same id (a restore in the background), then goes ahead. */
#define FS_JOURNAL_ORDER_MS 30000
/* Journals n's staged bytes (fd, the staged file *staged, which the journal may take over:
 * *staged is then NULL) for a background upload; 0 once durable, or -errno. */
int fs_wb_stage(struct fs_ctx *fs, struct fs_node *n, int fd, uint64_t size, char **staged);
/* Wait for a pending write-back upload of the image (node, child, inode) before an
 * operation that must be ordered after it: 0 (stored, or none), -EIO (refused), or
 * -ETIMEDOUT (an attempt at it begun after the call failed, or FS_WB_WAIT_MS passed; it stays queued).
 * fs_wb_wait_child maps -EIO to 0 (the operation then sees what is stored). */
int fs_wb_wait_node(struct fs_ctx *fs, struct fs_node *n);
int fs_wb_wait_child(struct fs_ctx *fs, struct fs_node *dir, const char *name);
int fs_wb_wait_ino(struct fs_ctx *fs, fuse_ino_t ino);
/* journal_config.on_upload: applies a stored (or refused) write-back upload to the node. */
void fs_wb_on_upload(void *arg, const char *id, const struct api_image *img, int fd);
/* journal_config.on_restored: a replaced image put back by the journal shows again. */
void fs_journal_on_restored(void *arg, const struct api_image *img);
/* Clean unmount: waits up to FS_WB_DRAIN_MS for pending journal entries, logging. */
void fs_wb_drain(struct fs_ctx *fs);

/* ---- fs_xattr.c ---------------------------------------------------------------- */
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* ---- fs_url.c: user.url (upload from a URL) ------------------------------------- */
#define FS_XATTR_URL "user.url"
#define FS_MAX_URL_BYTES 4096 /* cap of a user.url value */
/* The setxattr operation for the name user.url: on an image, checks the URL (http:// or
 * https:// only, else EINVAL without a request; over FS_MAX_URL_BYTES E2BIG) and uploads from
 * it (fs_img_upload_url), replying with the upload's errno; ENOTSUP elsewhere, EROFS on a ro
 * mount. Every refusal and failure writes one log line naming the path. */
void fs_url_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *value, size_t size);
void fs_fmt_rfc3339(int64_t ms, char *buf, size_t len);
/* malloc'd "name count\n" lines of fs->ops (the FS_XATTR_OPS value); NULL on ENOMEM. */
char *fs_ops_stats_text(struct fs_ctx *fs);
/* user.state of an image (malloc'd, NULL on ENOMEM): "stored", "local", "pending",
 * "uploading" or "failed: <ERRNO>: <API message>". */
char *fs_img_state_locked(struct fs_ctx *fs, const struct fs_node *n);

/* ---- fs_special.c: variants/, keys/, stats, statfs ----------------------------- */
int fs_variants_refresh(struct fs_ctx *fs, int force);
int fs_keys_refresh(struct fs_ctx *fs, int force);
int fs_special_lookup(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		      struct fuse_entry_param *e);
int fs_special_open(struct fs_ctx *fs, struct fs_node *n, int flags, struct fs_fh **out);
int fs_special_create(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		      struct fuse_entry_param *e, struct fs_fh **out);
ssize_t fs_special_write(struct fs_fh *fh, const char *buf, size_t size, off_t off);
void fs_special_read(fuse_req_t req, struct fs_fh *fh, size_t size, off_t off);
int fs_special_truncate(struct fs_fh *fh, off_t size);
int fs_special_flush(struct fs_ctx *fs, struct fs_fh *fh);
void fs_special_release(struct fs_ctx *fs, struct fs_fh *fh);
int fs_special_unlink(struct fs_ctx *fs, struct fs_node *dir, const char *name);
void fs_op_statfs(fuse_req_t req, fuse_ino_t ino);

/* ---- fs_control.c: .imagesfs/ (status, errors, refresh) ------------------------ */
#define FS_CTL_DIR ".imagesfs"
/* Links .imagesfs/ and its files below the root; call once after fs_table_init. */
int fs_ctl_init(struct fs_ctx *fs);
/* Installs the SIGHUP handler (refresh all listings); after fuse_set_signal_handlers. */
int fs_ctl_signals(struct fs_ctx *fs);
mode_t fs_ctl_mode(const struct fs_node *n);
int fs_ctl_open(struct fs_ctx *fs, struct fs_node *n, int flags, struct fs_fh **out);
void fs_ctl_read(fuse_req_t req, struct fs_fh *fh, size_t size, off_t off);
ssize_t fs_ctl_write(struct fs_ctx *fs, struct fs_fh *fh, const char *buf, size_t size);
/* Frees a released control handle after a grace period (see fs_control.c); takes fh. */
void fs_ctl_release(struct fs_fh *fh);
/* Frees every handle still waiting; once no request can run (after the session). */
void fs_ctl_cleanup(void);

/* ---- fs_deliver.c: signed delivery URLs ---------------------------------------- */
#define FS_DEFAULT_DELIVERY_URL "https://imagedelivery.net"
#define FS_DEFAULT_URL_TTL 86400
/* The signing key's value (malloc'd) through the keys/ listing (refreshed after dir_ttl):
 * the key named sign_key=, else "default", else the first. -ENOKEY when the account has no
 * such key, the listing's -errno when it cannot be read. The value is never logged. */
int fs_sign_key(struct fs_ctx *fs, char **value);
/* A variant's options (compact JSON, malloc'd) and neverRequireSignedURLs (0/1) through
 * the variants/ listing. -ENOENT when the account has no such variant. */
int fs_variant_info(struct fs_ctx *fs, const char *name, char **options, int *never);
/* Turns *urls ("url\n"..., the user.variants text of a private image) into signed URLs
 * valid for url_ttl, leaving variants with neverRequireSignedURLs plain. Replaces *urls
 * (freed) on success; on failure *urls is unchanged and one line is logged for path. */
int fs_variants_sign(struct fs_ctx *fs, const char *path, char **urls);
/* Signs one delivery URL into out (API_MAX_SIGNED_URL bytes) with value key. */
int fs_sign_one(struct fs_ctx *fs, const char *key, const char *url, char *out, size_t outsz);

/* ---- fs_renditions.c: renditions/<variant>/<image path> (read-only) ------------- */
struct fs_rend;
/* True for renditions/ and every inode below it (fs_ops.c dispatches them here). */
int fs_rend_is(fuse_ino_t ino);
void fs_rend_lookup(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t parent, const char *name);
/* Only for inodes below renditions/ (renditions/ itself is a table node). */
void fs_rend_getattr(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t ino);
void fs_rend_opendir(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t ino, struct fuse_file_info *fi);
/* fh of kind FS_FH_REND_DIR (released with fs_fh_free): its entries for fs_ops.c's readdir. */
size_t fs_rend_dirent_locked(fuse_req_t req, struct fs_ctx *fs, struct fs_fh *fh, size_t idx,
			     char *buf, size_t room, int plus);
/* Fetches the rendition through the cache (EROFS for writes); fh kind FS_FH_REND. */
void fs_rend_open(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_rend_read(fuse_req_t req, struct fs_fh *fh, size_t size, off_t off);
/* Frees fs->rend (after the session ended). */
void fs_rend_free(struct fs_ctx *fs);

/* ---- fs_ops.c ------------------------------------------------------------------ */
extern const struct fuse_lowlevel_ops fs_ops;

#endif

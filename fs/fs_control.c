/*
 * fs_control.c - the control directory MOUNT/.imagesfs/: what the mount is doing, and the
 * few things a user may ask of it, as files (the `imagesfs` command reads only these).
 *
 *   status   r   one JSON document: uploads, requests, budget, cache, listings, options
 *   errors   r   the last FS_ERRLOG_MAX failures, one line each
 *   refresh  rw  write "images", "variants", "keys" or "all": those listings are dropped
 *                and the next access lists again (SIGHUP does "all"); reads the usage
 *
 * Like /proc: a file's content is made when it is opened (one snapshot, so a reader sees
 * one consistent document however it reads it) and never costs an API request. This file
 * only reads the snapshot functions of the modules where things happen (api_activity_get,
 * cache_stats_get, fs_errlog_snapshot, the table's listing state); it counts nothing
 * itself. Nothing here is a secret: mount options are shown without credentials.
 *
 * A control file is one row of ctl_files. `open` runs in a FUSE worker thread and may
 * block (a `sync` row may wait there until the write-back queue drains); `write` gets each
 * write(2) whole and its -errno is what the writer's write(2) returns. The directory and
 * its files are ordinary nodes of the table, linked at mount and never removed; nothing in
 * them counts as an image (statfs counts the account's images).
 */
#include "fs.h"
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CTL_MAX_BYTES (1024 * 1024) /* cap of one control file's content */

/* Content under construction; err sticks at the first failure (-ENOMEM, -EFBIG). */
struct ctl_buf {
	char *p;
	size_t len, cap;
	int err;
};

struct fs_ctl_file {
	const char *name;
	mode_t mode;
	/* Makes the content at open (malloc'd into b); may block. NULL: not readable. */
	int (*read)(struct fs_ctx *fs, struct ctl_buf *b);
	/* Acts on one write(2) of len bytes; 0 or -errno. NULL: not writable. */
	int (*write)(struct fs_ctx *fs, const char *buf, size_t len);
};

static int ctl_status(struct fs_ctx *fs, struct ctl_buf *b);
static int ctl_errors(struct fs_ctx *fs, struct ctl_buf *b);
static int ctl_refresh_usage(struct fs_ctx *fs, struct ctl_buf *b);
static int ctl_refresh(struct fs_ctx *fs, const char *buf, size_t len);
static int ctl_sync(struct fs_ctx *fs, struct ctl_buf *b);

/* One row per control file (issue 12's `sync` adds its row here). */
static const struct fs_ctl_file ctl_files[] = {
    {"status", S_IFREG | 0444, ctl_status, NULL},
    {"errors", S_IFREG | 0444, ctl_errors, NULL},
    {"refresh", S_IFREG | 0644, ctl_refresh_usage, ctl_refresh},
    {"sync", S_IFREG | 0444, ctl_sync, NULL},
};
#define CTL_N (sizeof(ctl_files) / sizeof(ctl_files[0]))

static void buf_printf(struct ctl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(struct ctl_buf *b, const char *fmt, ...)
{
	va_list ap;
	if (b->err)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = -EIO;
			return;
		}
		if (b->p && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t want = b->len + (size_t)n + 1, cap = b->cap ? b->cap : 4096;
		while (cap < want)
			cap *= 2;
		if (cap > CTL_MAX_BYTES) {
			b->err = -EFBIG;
			return;
		}
		char *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* A JSON string (quoted, escaped); NULL is null. */
static void buf_json_str(struct ctl_buf *b, const char *s)
{
	if (!s) {
		buf_printf(b, "null");
		return;
	}
	buf_printf(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			buf_printf(b, "\\u%04x", *p);
		else
			buf_printf(b, "%c", *p);
	}
	buf_printf(b, "\"");
}

/* ---- status --------------------------------------------------------------------- */

/*
 * What other modules report:
 *   batch_tokens:    live tokens the batch pool holds (api_batch_snapshot)
 *   journal_pending: intents in the journal not yet done (journal_pending)
 *   uploads_queued:  files waiting in the write-back queue (journal_pending_uploads)
 */
struct ctl_pending {
	uint64_t batch_tokens, journal_pending, uploads_queued;
};

static void ctl_pending_get(struct fs_ctx *fs, struct ctl_pending *p)
{
	struct api_batch_snapshot bs;
	memset(p, 0, sizeof(*p));
	api_batch_snapshot(fs->api, &bs);
	p->batch_tokens = bs.tokens_live;
	if (fs->journal) {
		p->journal_pending = journal_pending(fs->journal);
		p->uploads_queued = journal_pending_uploads(fs->journal);
	}
}

static void status_listing(struct ctl_buf *b, struct fs_ctx *fs, const char *name,
			   const struct fs_listing *l, uint64_t entries, int last)
{
	buf_printf(b, "    ");
	buf_json_str(b, name);
	if (l->fresh_ms)
		buf_printf(b, ": {\"age_s\": %.1f, ", (double)(fs_now_ms() - l->fresh_ms) / 1000);
	else
		buf_printf(b, ": {\"age_s\": null, ");
	buf_printf(b, "\"fresh\": %s, \"entries\": %llu}%s\n",
		   fs_listing_left_locked(fs, l) > 0 ? "true" : "false",
		   (unsigned long long)entries, last ? "" : ",");
}

static uint64_t children_locked(const struct fs_node *dir)
{
	uint64_t n = 0;
	for (const struct fs_node *c = dir->u.first_child; c; c = c->next)
		n++;
	return n;
}

static void status_listings(struct ctl_buf *b, struct fs_ctx *fs)
{
	pthread_mutex_lock(&fs->lock);
	buf_printf(b, "  \"listings\": {\n");
	status_listing(b, fs, "images", &fs->images, fs->n_images, 0);
	status_listing(b, fs, "variants", &fs->variants,
		       children_locked(fs->fixed[FS_INO_VARIANTS]), 0);
	status_listing(b, fs, "keys", &fs->keys, children_locked(fs->fixed[FS_INO_KEYS]), 1);
	buf_printf(b, "  },\n");
	pthread_mutex_unlock(&fs->lock);
}

static void status_requests(struct ctl_buf *b, const struct api_activity *a)
{
	buf_printf(b,
		   "  \"requests\": {\"total\": %llu, \"retries\": %llu, \"http_429\": %llu, "
		   "\"waiting\": %llu, \"throttled_ms\": %llu,\n    \"by_host\": {",
		   (unsigned long long)a->requests, (unsigned long long)a->retries,
		   (unsigned long long)a->http_429, (unsigned long long)a->waiting,
		   (unsigned long long)a->throttled_ms);
	for (size_t i = 0; i < a->n_hosts; i++) {
		buf_printf(b, "%s", i ? ", " : "");
		buf_json_str(b, a->hosts[i].name);
		buf_printf(b, ": %llu", (unsigned long long)a->hosts[i].requests);
	}
	buf_printf(b, "},\n    \"by_op\": {");
	for (int i = 0; i < API_OP_N; i++)
		buf_printf(b, "%s\"%s\": %llu", i ? ", " : "", api_op_name(i),
			   (unsigned long long)a->per_op[i]);
	buf_printf(b, "}},\n");
	if (a->limited)
		buf_printf(b,
			   "  \"budget\": {\"limited\": true, \"left\": %.0f, \"burst\": %.0f, "
			   "\"per_s\": %.2f},\n",
			   a->budget_left >= 1 ? (double)(uint64_t)a->budget_left : 0.0,
			   a->budget_burst, a->budget_rate);
	else
		buf_printf(b, "  \"budget\": {\"limited\": false, \"left\": null, \"burst\": null, "
			      "\"per_s\": null},\n");
}

static void status_cache(struct ctl_buf *b, struct fs_ctx *fs)
{
	struct cache_stats cs;
	cache_stats_get(fs->cache, &cs);
	uint64_t asked = cs.hits + cs.misses;
	buf_printf(
	    b,
	    "  \"cache\": {\"bytes\": %llu, \"cap\": %llu, \"entries\": %llu, \"hits\": %llu, "
	    "\"misses\": %llu, \"hit_rate\": ",
	    (unsigned long long)cs.bytes, (unsigned long long)cs.max_bytes,
	    (unsigned long long)cs.entries, (unsigned long long)cs.hits,
	    (unsigned long long)cs.misses);
	if (asked)
		buf_printf(b, "%.3f},\n", (double)cs.hits / (double)asked);
	else
		buf_printf(b, "null},\n");
}

static void status_opt_str(struct ctl_buf *b, const char *name, const char *v)
{
	buf_printf(b, "\"%s\": ", name);
	buf_json_str(b, v);
	buf_printf(b, ", ");
}

/* Mount options: everything but credentials (only whether a file named them). */
static void status_options(struct ctl_buf *b, struct fs_ctx *fs)
{
	const struct fs_config *c = &fs->cfg;
	buf_printf(b, "  \"options\": {");
	status_opt_str(b, "account", c->account);
	status_opt_str(b, "mountpoint", c->mountpoint);
	status_opt_str(b, "api_url", c->api_url);
	status_opt_str(b, "cache_dir", c->cache_dir);
	status_opt_str(b, "cache_size", c->cache_size);
	status_opt_str(b, "rate_limit", c->rate_limit);
	status_opt_str(b, "log_file", c->log_file);
	buf_printf(b,
		   "\"dir_ttl\": %d, \"timeout\": %d, \"ro\": %s, \"allow_other\": %s, "
		   "\"uid\": %d, \"gid\": %d, \"umask\": \"%03o\", \"credentials_file\": %s}\n",
		   c->dir_ttl, c->timeout_s, c->ro ? "true" : "false",
		   c->allow_other ? "true" : "false", (int)fs->uid, (int)fs->gid,
		   (unsigned)fs->umask, c->credentials ? "true" : "false");
}

static int ctl_status(struct fs_ctx *fs, struct ctl_buf *b)
{
	struct api_activity a;
	struct ctl_pending p;
	uint64_t errors = 0;
	struct timespec now;

	api_activity_get(fs->api, &a);
	ctl_pending_get(fs, &p);
	fs_errlog_snapshot(NULL, &errors);
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t up_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - fs->mount_ms;

	buf_printf(b, "{\n  \"version\": \"%s\",\n  \"uptime_s\": %lld,\n", IMAGESFS_VERSION,
		   (long long)(up_ms > 0 ? up_ms / 1000 : 0));
	buf_printf(b,
		   "  \"uploads\": {\"done\": %llu, \"in_flight\": %llu, \"queued\": %llu, "
		   "\"failed\": %llu},\n",
		   (unsigned long long)a.uploads_done, (unsigned long long)a.uploads_in_flight,
		   (unsigned long long)p.uploads_queued, (unsigned long long)a.uploads_failed);
	buf_printf(b, "  \"bytes\": {\"up\": %llu, \"down\": %llu},\n",
		   (unsigned long long)a.bytes_up, (unsigned long long)a.bytes_down);
	status_requests(b, &a);
	buf_printf(b, "  \"batch_tokens\": %llu,\n  \"journal_pending\": %llu,\n",
		   (unsigned long long)p.batch_tokens, (unsigned long long)p.journal_pending);
	buf_printf(b, "  \"errors\": %llu,\n", (unsigned long long)errors);
	status_cache(b, fs);
	status_listings(b, fs);
	status_options(b, fs);
	buf_printf(b, "}\n");
	return b->err;
}

/* ---- errors --------------------------------------------------------------------- */

/* One line per failure, oldest first:
 * TIME OP PATH ERRNO http=STATUS code=CODE MESSAGE (path quoted when it holds blanks). */
static int ctl_errors(struct fs_ctx *fs, struct ctl_buf *b)
{
	(void)fs;
	struct fs_errlog_entry *e = malloc(FS_ERRLOG_MAX * sizeof(*e));
	if (!e)
		return -ENOMEM;
	size_t n = fs_errlog_snapshot(e, NULL);
	for (size_t i = 0; i < n; i++) {
		char when[40], nb[16];
		fs_fmt_rfc3339(e[i].wall_ms, when, sizeof(when));
		buf_printf(b, "%s %s ", when, e[i].op);
		if (strpbrk(e[i].path, " \t\"\\"))
			buf_json_str(b, e[i].path);
		else
			buf_printf(b, "%s", e[i].path);
		buf_printf(b, " %s http=%ld code=%d %s\n", fs_errno_name(e[i].err, nb, sizeof(nb)),
			   e[i].http_status, e[i].cf_code, e[i].message);
	}
	free(e);
	return b->err;
}

/* ---- sync ----------------------------------------------------------------------- */

/* Opening `sync` waits (at most FS_SYNC_WAIT_MS) until every journal entry of this mount
 * is finished: write-back uploads stored, replaces and renames settled. The content is
 * "ok\n", or one "failed images/<id>\n" line per upload the API refused (abandoned since
 * the last sync, bytes in <cache_dir>/lost+found) and per entry still unfinished when the
 * wait ended (the server still refuses; the journal keeps trying). */
static int ctl_sync(struct fs_ctx *fs, struct ctl_buf *b)
{
	char *failed = NULL;
	int rc = fs->journal ? journal_wait(fs->journal, FS_SYNC_WAIT_MS, &failed) : 0;
	if (rc == -ENOMEM)
		return rc;
	if (rc == 0)
		buf_printf(b, "ok\n");
	for (char *p = failed, *nl; p && *p; p = nl + 1) {
		if (!(nl = strchr(p, '\n')))
			break;
		buf_printf(b, "failed %.*s\n", (int)(nl - p), p);
	}
	free(failed);
	return b->err;
}

/* ---- refresh -------------------------------------------------------------------- */

static int ctl_refresh_usage(struct fs_ctx *fs, struct ctl_buf *b)
{
	(void)fs;
	buf_printf(b, "write one of: images variants keys all\n");
	return b->err;
}

/* "images", "variants", "keys" or "all", with blanks and newlines around (echo adds one);
 * several words may be given. Anything else is EINVAL and changes nothing. */
static int ctl_refresh(struct fs_ctx *fs, const char *buf, size_t len)
{
	static const struct {
		const char *word;
		int mask;
	} words[] = {{"images", FS_DROP_IMAGES},
		     {"variants", FS_DROP_VARIANTS},
		     {"keys", FS_DROP_KEYS},
		     {"all", FS_DROP_ALL}};
	int mask = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && strchr(" \t\r\n", buf[i]))
			i++;
		size_t start = i, k;
		while (i < len && !strchr(" \t\r\n", buf[i]) && buf[i])
			i++;
		if (i == start)
			continue;
		for (k = 0; k < sizeof(words) / sizeof(words[0]); k++)
			if (i - start == strlen(words[k].word) &&
			    memcmp(buf + start, words[k].word, i - start) == 0)
				break;
		if (k == sizeof(words) / sizeof(words[0])) {
			fs_log(FS_LOG_INFO,
			       "refused a write to %s/refresh: '%.*s' is not one of "
			       "images, variants, keys, all",
			       FS_CTL_DIR, (int)(i - start > 40 ? 40 : i - start), buf + start);
			return -EINVAL;
		}
		mask |= words[k].mask;
	}
	if (!mask)
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	fs_listings_drop_locked(fs, mask);
	pthread_mutex_unlock(&fs->lock);
	fs_log(FS_LOG_DEBUG, "refresh requested (mask %d)", mask);
	return 0;
}

/* ---- the files -------------------------------------------------------------------- */

static const struct fs_ctl_file *ctl_of(const struct fs_node *n)
{
	for (size_t i = 0; i < CTL_N; i++)
		if (strcmp(ctl_files[i].name, n->name) == 0)
			return &ctl_files[i];
	return NULL;
}

int fs_ctl_init(struct fs_ctx *fs)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_node *dir =
	    fs_node_new_locked(fs, fs->fixed[FS_INO_ROOT], FS_CTL_DIR, FS_K_CTLDIR);
	int rc = dir ? 0 : -ENOMEM;
	if (dir)
		dir->uploaded_ms = fs->mount_ms;
	for (size_t i = 0; dir && i < CTL_N && rc == 0; i++) {
		struct fs_node *n = fs_node_new_locked(fs, dir, ctl_files[i].name, FS_K_CTL);
		if (!n) {
			rc = -ENOMEM;
		} else {
			n->uploaded_ms = fs->mount_ms;
			n->u.ctl_mode = ctl_files[i].mode;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

mode_t fs_ctl_mode(const struct fs_node *n)
{
	const struct fs_ctl_file *f = ctl_of(n);
	return f ? f->mode : S_IFREG | 0444;
}

int fs_ctl_open(struct fs_ctx *fs, struct fs_node *n, int flags, struct fs_fh **out)
{
	const struct fs_ctl_file *f = ctl_of(n);
	int acc = flags & O_ACCMODE;
	if (!f)
		return -ENOENT;
	if ((acc != O_RDONLY || (flags & O_TRUNC)) && !f->write)
		return -EACCES;
	if (acc != O_WRONLY && !f->read)
		return -EACCES;
	struct fs_fh *fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fh->kind = FS_FH_CTL;
	fh->fd = -1;
	fh->node = n;
	fh->writable = acc != O_RDONLY;
	fh->ctl = (int)(f - ctl_files);
	if (acc != O_WRONLY) {
		struct ctl_buf b = {0};
		int rc = f->read(fs, &b);
		if (rc == 0 && !b.p)
			buf_printf(&b, "%s", ""); /* an empty file still gets a buffer */
		rc = rc ? rc : b.err;
		if (rc < 0) {
			free(b.p);
			free(fh);
			return rc;
		}
		fh->buf = b.p;
		fh->len = b.len;
	}
	pthread_mutex_lock(&fs->lock);
	n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	*out = fh;
	return 0;
}

void fs_ctl_read(fuse_req_t req, struct fs_fh *fh, size_t size, off_t off)
{
	if (off < 0 || (size_t)off >= fh->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size_t n = fh->len - (size_t)off;
	fuse_reply_buf(req, fh->buf + off, n < size ? n : size);
}

ssize_t fs_ctl_write(struct fs_ctx *fs, struct fs_fh *fh, const char *buf, size_t size)
{
	const struct fs_ctl_file *f = &ctl_files[fh->ctl];
	if (!fh->writable || !f->write)
		return -EBADF;
	int rc = f->write(fs, buf, size);
	return rc < 0 ? rc : (ssize_t)size;
}

/*
 * Released handles are freed after a grace period, not at once: a reader killed in the
 * middle of a read (SIGKILL, a timeout) abandons its READ in the kernel, which then sends
 * RELEASE while a worker may still be replying to that READ from the handle's buffer.
 * Nothing here takes longer than a memcpy and a writev, so CTL_RETIRE_MS is ample, and at
 * most CTL_RETIRE_MAX handles (a few KiB each) wait.
 */
#define CTL_RETIRE_MS 2000
#define CTL_RETIRE_MAX 64

static pthread_mutex_t ctl_retire_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	struct fs_fh *fh;
	int64_t ms;
} ctl_retired[CTL_RETIRE_MAX]; /* guarded by ctl_retire_lock, oldest first */
static size_t ctl_n_retired;   /* guarded by ctl_retire_lock */

/* Frees the oldest `n` retired handles. Caller holds ctl_retire_lock. */
static void ctl_retire_drop_locked(size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ctl_retired[i].fh->buf); /* a control handle owns nothing else */
		free(ctl_retired[i].fh);
	}
	memmove(ctl_retired, ctl_retired + n, (ctl_n_retired - n) * sizeof(ctl_retired[0]));
	ctl_n_retired -= n;
}

void fs_ctl_release(struct fs_fh *fh)
{
	int64_t now = fs_now_ms();
	size_t old = 0;
	pthread_mutex_lock(&ctl_retire_lock);
	while (old < ctl_n_retired && now - ctl_retired[old].ms >= CTL_RETIRE_MS)
		old++;
	if (old == 0 && ctl_n_retired == CTL_RETIRE_MAX)
		old = 1;
	ctl_retire_drop_locked(old);
	ctl_retired[ctl_n_retired].fh = fh;
	ctl_retired[ctl_n_retired++].ms = now;
	pthread_mutex_unlock(&ctl_retire_lock);
}

void fs_ctl_cleanup(void)
{
	pthread_mutex_lock(&ctl_retire_lock);
	ctl_retire_drop_locked(ctl_n_retired);
	pthread_mutex_unlock(&ctl_retire_lock);
}

/* ---- SIGHUP ------------------------------------------------------------------------ */

static struct fs_ctx *ctl_hup_fs; /* set once before the handler is installed */

static void ctl_on_hup(int sig)
{
	(void)sig;
	if (ctl_hup_fs)
		atomic_store(&ctl_hup_fs->hup, 1); /* applied by fs_listing_stale_locked */
}

int fs_ctl_signals(struct fs_ctx *fs)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ctl_on_hup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	ctl_hup_fs = fs;
	return sigaction(SIGHUP, &sa, NULL) < 0 ? -errno : 0;
}

/*
 * fs_upload.c - images/: creating, writing, uploading and replacing (renaming: fs_rename.c).
 *
 * A file being written is staged in a private file in the cache's tmp directory (struct
 * fs_wstate, shared by the writer handle and readers that open it meanwhile). The upload is
 * synchronous and happens in flush (close), so its error reaches the program that wrote:
 * `cp` fails visibly, nothing is reported written that was not uploaded. release uploads a
 * dirty handle that was never flushed. After a successful upload the staged file becomes the
 * cache entry of the new version (rename, no copy), so reading back costs no download.
 *
 * The API cannot replace an image's bytes under the same id. Replacing (O_TRUNC on an
 * uploaded image, or renaming onto one) is therefore: keep an fd on the old bytes (through
 * the cache), delete, upload the new bytes with the old metadata, creator and
 * requireSignedURLs; if that upload fails, upload the old bytes again under the same id and
 * return the failure. A rename (fs_rename.c) is upload-under-the-new-id, then delete the old
 * id; when the upload fails the source is untouched.
 *
 * An upload from a URL (user.url, fs_url.c) takes the same two paths, new file or replace,
 * with the URL the API fetches as the source instead of the staged file; a writer handle of
 * its own marks the node as being written meanwhile.
 */
#include "fs.h"
#include "fs_upload.h"
#include "journal.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fs_wstate {
	pthread_mutex_t lock; /* serializes writes, truncates and uploads */
	int refs;	      /* guarded by fs->lock */
	int fd;		      /* staged bytes; after an upload, the (adopted) cache file */
	char *path;	      /* staged path, NULL once adopted into the cache */
	uint64_t size;
	int dirty;    /* bytes differ from the uploaded image (or there is none yet) */
	int uploaded; /* an upload from this state succeeded: the node's size is exact */
	int err;      /* sticky failure (EFBIG write, failed upload): returned, never uploaded */
	uint32_t prev_size; /* the node's size before the open (prev_known: it was exact) */
	int prev_known;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct fs_wstate *wstate_new(struct fs_ctx *fs)
{
	struct fs_wstate *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	if (cache_stage_open(fs->cache, &w->fd, &w->path) < 0) {
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	return w;
}

void fs_wstate_free(struct fs_wstate *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->path) {
		unlink(w->path);
		free(w->path);
	}
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static int scratch_open_write(struct fs_ctx *fs, struct fs_node *n, struct fuse_file_info *fi,
			      struct fs_fh **out);

/* ---- opening ------------------------------------------------------------------ */

char *fs_up_child_id_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	char *d = fs_node_id_locked(fs, dir);
	if (!d)
		return NULL;
	size_t dl = strlen(d), nl = strlen(name);
	char *s = malloc(dl + nl + 2);
	if (s) {
		memcpy(s, d, dl);
		if (dl)
			s[dl++] = '/';
		memcpy(s + dl, name, nl + 1);
	}
	free(d);
	return s;
}

static struct fs_fh *staged_fh(struct fs_node *n, struct fs_wstate *w, int writable)
{
	struct fs_fh *fh = calloc(1, sizeof(*fh));
	if (!fh)
		return NULL;
	fh->kind = FS_FH_STAGED;
	fh->node = n;
	fh->w = w;
	fh->writable = writable;
	fh->fd = -1;
	return fh;
}

/* Installs a fresh wstate on n (which must have none) and returns a writer handle. */
static int attach_writer(struct fs_ctx *fs, struct fs_node *n, int dirty, struct fs_fh **out)
{
	struct fs_wstate *w = wstate_new(fs);
	struct fs_fh *fh = w ? staged_fh(n, w, 1) : NULL;
	if (!fh) {
		if (w)
			fs_wstate_free(w);
		return w ? -ENOMEM : -EIO;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_img_extra *x = fs_node_extra_locked(n);
	if (!x || x->w || !(n->flags & FS_NF_LINKED)) {
		pthread_mutex_unlock(&fs->lock);
		fs_wstate_free(w);
		free(fh);
		return x ? (x->w ? -EBUSY : -ENOENT) : -ENOMEM;
	}
	x->w = w;
	w->refs = 1;
	w->dirty = dirty;
	w->prev_size = n->size;
	w->prev_known = (n->flags & FS_NF_SIZE) != 0;
	n->nopen++;
	n->size = 0;
	n->flags |= FS_NF_SIZE;
	pthread_mutex_unlock(&fs->lock);
	*out = fh;
	return 0;
}

int fs_img_open_write(struct fs_ctx *fs, struct fs_node *n, struct fuse_file_info *fi,
		      struct fs_fh **out)
{
	if (fs->cfg.ro)
		return -EROFS;
	int wrc = fs_wb_wait_node(fs, n); /* a replace goes after a pending upload */
	if (wrc < 0 && wrc != -EIO)
		return wrc;
	pthread_mutex_lock(&fs->lock);
	int busy = n->u.img && n->u.img->w;
	int pending = (n->flags & FS_NF_PENDING) != 0;
	if (n->flags & FS_NF_SCRATCH) {
		pthread_mutex_unlock(&fs->lock);
		return scratch_open_write(fs, n, fi, out);
	}
	char *path = fs_node_path_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	int rc = 0;
	if (busy) {
		fs_log(FS_LOG_INFO, "cannot open '%s' for writing: it is being written already",
		       path ? path : "?");
		rc = -EBUSY;
	} else if (!pending && !(fi->flags & O_TRUNC)) {
		fs_log(FS_LOG_INFO,
		       "cannot open '%s' for writing: images cannot be edited in "
		       "place or appended to (open with O_TRUNC to replace the whole image)",
		       path ? path : "?");
		rc = -EPERM;
	} else {
		rc = attach_writer(fs, n, 0, out); /* no write before close: unchanged */
	}
	free(path);
	return rc;
}

int fs_img_open_staged(struct fs_ctx *fs, struct fs_node *n, struct fs_fh **out)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_wstate *w = n->u.img ? n->u.img->w : NULL;
	struct fs_fh *fh = w ? staged_fh(n, w, 0) : NULL;
	if (fh) {
		w->refs++;
		n->nopen++;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!fh)
		return w ? -ENOMEM : -EAGAIN;
	*out = fh;
	return 0;
}

static int create_node(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		       struct fuse_entry_param *e, struct fs_fh **out)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	if (n) {
		pthread_mutex_unlock(&fs->lock);
		return -EEXIST;
	}
	n = fs_node_new_locked(fs, dir, name, FS_K_IMG);
	if (n) {
		n->flags |= FS_NF_PENDING | FS_NF_SIZE;
		n->uploaded_ms = wall_ms();
		n->gen = fs->images.gen;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return -ENOMEM;
	int rc = attach_writer(fs, n, 0, out);
	pthread_mutex_lock(&fs->lock);
	if (rc < 0)
		fs_node_unlink_locked(fs, n);
	else {
		if (fs_is_scratch_name(name)) { /* the node keeps the bytes after close */
			n->flags |= FS_NF_SCRATCH;
			n->u.img->w->refs++;
		}
		fs_node_entry_locked(fs, n, e);
		/* New and empty: the kernel may keep these attributes (cp's fstat after the
		 * create needs no GETATTR); each write through it drops its cached size and
		 * times, so what follows asks again (attr timeout 0 while written). */
		e->attr_timeout = e->entry_timeout;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

void fs_img_create(fuse_req_t req, struct fs_ctx *fs, struct fs_node *dir, const char *name,
		   struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	struct fs_fh *fh = NULL;
	int rc = 0;

	if (fs->cfg.ro) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	char *id = fs_up_child_id_locked(fs, dir, name);
	pthread_mutex_unlock(&fs->lock);
	if (!id)
		rc = -ENOMEM;
	else if (!fs_name_valid(name) ||
		 (!fs_is_scratch_name(name) && api_custom_id_valid(id) < 0)) {
		fs_log(FS_LOG_ERR,
		       "cannot create 'images/%s': not a valid image id (ids are at "
		       "most %d bytes, not UUID-shaped, without control characters)",
		       id, API_MAX_ID_LEN);
		rc = -EINVAL;
	} else
		rc = create_node(fs, dir, name, &e, &fh);
	free(id);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)fh;
	/* As every open of bytes being written (fs_img_open): no page cache. Besides a copy into
	 * it per write, a buffered FUSE write asks for security.capability (GETXATTR) each time
	 * (file_remove_privs), 8 extra round trips per 1 MB written by cp. */
	fi->direct_io = 1;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		fs_img_release(fs, fh);
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, fh->node);
		pthread_mutex_unlock(&fs->lock);
		fs_fh_free(fh);
	}
}

/* ---- writing ------------------------------------------------------------------ */

/* After an upload the staged file is the cache's entry: copy before changing it. */
static int restage_w(struct fs_ctx *fs, struct fs_wstate *w)
{
	int fd;
	char *path;
	int rc = cache_stage_open(fs->cache, &fd, &path);
	if (rc < 0)
		return rc;
	rc = fs_copy_fd(w->fd, fd);
	if (rc < 0) {
		close(fd);
		unlink(path);
		free(path);
		return rc;
	}
	close(w->fd);
	w->fd = fd;
	w->path = path;
	return 0;
}

static void node_size_set(struct fs_ctx *fs, struct fs_node *n, uint64_t size)
{
	pthread_mutex_lock(&fs->lock);
	n->size = size;
	n->flags |= FS_NF_SIZE;
	pthread_mutex_unlock(&fs->lock);
}

static int write_too_big(struct fs_ctx *fs, struct fs_fh *fh, struct fs_wstate *w)
{
	if (!w->err) {
		pthread_mutex_lock(&fs->lock);
		char *path = fs_node_path_locked(fs, fh->node);
		pthread_mutex_unlock(&fs->lock);
		fs_log(FS_LOG_ERR, "cannot write '%s': images are limited to %d bytes",
		       path ? path : "?", API_MAX_IMAGE_BYTES);
		free(path);
	}
	w->err = -EFBIG;
	return -EFBIG;
}

ssize_t fs_img_write(struct fs_ctx *fs, struct fs_fh *fh, const char *buf, size_t size, off_t off)
{
	struct fs_wstate *w = fh->w;
	ssize_t rc;
	if (!fh->writable || !w)
		return -EBADF;
	pthread_mutex_lock(&w->lock);
	if (off < 0 || (uint64_t)off + size > API_MAX_IMAGE_BYTES) {
		rc = write_too_big(fs, fh, w);
		goto out;
	}
	if (!w->path && (rc = restage_w(fs, w)) < 0)
		goto out;
	rc = pwrite(w->fd, buf, size, off);
	if (rc < 0) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)off + (uint64_t)rc > w->size)
		w->size = (uint64_t)off + (uint64_t)rc;
	w->dirty = 1;
	node_size_set(fs, fh->node, w->size);
out:
	pthread_mutex_unlock(&w->lock);
	return rc;
}

int fs_img_truncate(struct fs_ctx *fs, struct fs_fh *fh, off_t size)
{
	struct fs_wstate *w = fh->w;
	int rc = 0;
	if (!fh->writable || !w)
		return -EPERM;
	pthread_mutex_lock(&w->lock);
	if (size < 0 || size > API_MAX_IMAGE_BYTES)
		rc = write_too_big(fs, fh, w);
	else if (!w->path && (rc = restage_w(fs, w)) < 0)
		;
	else if (ftruncate(w->fd, size) < 0)
		rc = -errno;
	else {
		w->size = (uint64_t)size;
		w->dirty = 1;
		node_size_set(fs, fh->node, w->size);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

int fs_img_read_staged(struct fs_fh *fh, char *buf, size_t size, off_t off, ssize_t *got)
{
	struct fs_wstate *w = fh->w;
	pthread_mutex_lock(&w->lock);
	ssize_t r = pread(w->fd, buf, size, off);
	int rc = r < 0 ? -errno : 0;
	pthread_mutex_unlock(&w->lock);
	*got = r < 0 ? 0 : r;
	return rc;
}

/* ---- uploading ---------------------------------------------------------------- */

/* Every upload goes through here: the bytes of fd, or with url != NULL the image the API
 * fetches from url, under id with the attributes in a, and the stamp (fs_times.c) with the
 * mtime in a and the size of the bytes in fd (unknown for a URL: they never pass here).
 * errp (nullable) receives the API's detail of a failure. */
static int upload_fd_err(struct fs_ctx *fs, const char *id, int fd, const char *url,
			 const struct fs_attrs *a, const char *filename, const char *path,
			 struct api_image *out, struct api_err *errp)
{
	struct api_err local;
	struct api_err *e = errp ? errp : &local;
	struct stat st;
	char *meta = NULL;
	int64_t size = !url && fstat(fd, &st) == 0 ? (int64_t)st.st_size : -1;
	int rc = fs_stamp_meta(fs, a->meta, a->has_mtime, a->mtime_ns, size, path, &meta, NULL);
	if (rc < 0)
		return rc;
	struct api_upload up = {
	    .id = id,
	    .fd = url ? -1 : fd,
	    .filename = url ? NULL : filename,
	    .url = url,
	    .metadata_json = strcmp(meta, "{}") ? meta : NULL,
	    .creator = a->creator,
	    .require_signed_urls = a->rsu ? 1 : -1,
	};
	rc = api_image_upload(fs->api, &up, out, e);
	if (rc < 0)
		fs_log_api("upload", path, rc, e);
	free(meta);
	return rc;
}

int fs_up_upload_fd(struct fs_ctx *fs, const char *id, int fd, const char *url,
		    const struct fs_attrs *a, const char *filename, const char *path,
		    struct api_image *out)
{
	return upload_fd_err(fs, id, fd, url, a, filename, path, out, NULL);
}

int fs_up_delete_id(struct fs_ctx *fs, const char *id, const char *path)
{
	struct api_err err;
	int rc = api_image_delete(fs->api, id, &err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		fs_log_api("delete", path, rc, &err);
	return rc;
}

/* After journal_settle put the old image back under id (a new version): the node shows
 * it again, and the bytes already cached under the old version serve the new one. */
static void node_restored(struct fs_ctx *fs, struct fs_node *n, const char *id, int64_t old_version,
			  const char *path)
{
	struct api_image img;
	struct api_err err;
	int fd;
	if (api_image_get(fs->api, id, &img, &err) < 0)
		return; /* the next lookup or listing finds it */
	pthread_mutex_lock(&fs->lock);
	if (n && (n->flags & FS_NF_LINKED))
		fs_img_set_locked(fs, n, &img);
	pthread_mutex_unlock(&fs->lock);
	if (img.uploaded_ms != old_version &&
	    cache_lookup(fs->cache, id, old_version, &fd, NULL) == 0) {
		fs_cache_put_fd(fs, id, img.uploaded_ms, fd);
		close(fd);
	}
	api_image_release(&img);
}

/* A replace or a rename failed (rc) after its intent was journaled: settle the entry now
 * (the old image is put back if it was deleted); if the server does not let us yet, the
 * journal's thread keeps trying in the background. `deleted`: the DELETE of id succeeded,
 * so id is empty until settled. Returns 0 when settling found the new image stored after
 * all (its reply was lost and could not be read back; a rename's source is deleted now),
 * with *out the stored image, so the operation succeeds as the account says; else rc. */
int fs_up_settle_failed(struct fs_ctx *fs, struct fs_node *n, uint64_t seq, const char *id,
			int64_t old_version, int deleted, const char *path, int rc,
			struct api_image *out)
{
	struct api_err err;
	int st = journal_settle(fs->journal, seq);
	if (st == JOURNAL_AFTER && api_image_get(fs->api, id, out, &err) == 0) {
		fs_log(FS_LOG_INFO, "'%s' was stored after all (the journal read it back)", path);
		return 0;
	}
	if (st == JOURNAL_BEFORE && deleted) {
		node_restored(fs, n, id, old_version, path);
		fs_log(FS_LOG_WARN, "restored the previous '%s' after the failed replace", path);
		return rc;
	}
	if (st > 0)
		return rc;
	journal_defer(fs->journal, seq);
	fs_log(FS_LOG_ERR,
	       "cannot restore '%s' after a failed replace yet (%s): its bytes are kept in the "
	       "journal and it is put back in the background",
	       path, strerror(-st));
	/* The node stays: the name shows the old image (its bytes are cached, and pinned), the
	 * state the journal brings the account back to; fs_journal_on_restored updates it. */
	return rc;
}

/* The metadata to put the old image (node on, attributes old, bytes old_fd) back with: its
 * user metadata and its stamp (fs_times.c): the size of its bytes and its stored mtime (not
 * one set here and not stored yet). *out malloc'd, NULL when empty. 0 or -errno. */
static int old_meta(struct fs_ctx *fs, struct fs_node *on, const struct fs_attrs *old, int old_fd,
		    const char *id, char **out)
{
	struct stat st;
	*out = NULL;
	if (!old)
		return 0;
	pthread_mutex_lock(&fs->lock);
	int mtime = on && (on->flags & FS_NF_MTIME) && !(on->flags & FS_NF_TIMES);
	pthread_mutex_unlock(&fs->lock);
	int64_t size = fstat(old_fd, &st) == 0 ? (int64_t)st.st_size : -1;
	int rc = fs_stamp_meta(fs, old->meta, mtime, old->mtime_ns, size, id, out, NULL);
	if (rc == 0 && !strcmp(*out, "{}")) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* Records the intent to replace the image at id (its bytes pinned, see journal.h); on is
 * the node of that image (for its stamp). A rename names its source (src_id, version). */
int fs_up_journal_replace(struct fs_ctx *fs, struct fs_node *on, const char *id,
			  const char *src_id, int64_t src_version, const struct fs_attrs *old,
			  int64_t old_version, int old_fd, uint64_t *seq)
{
	char *meta;
	if (!fs->journal)
		return -EIO;
	int rc = old_meta(fs, on, old, old_fd, id, &meta);
	if (rc < 0)
		return rc == -ENOMEM ? rc : -EIO;
	struct journal_intent in = {
	    .op = src_id ? JOURNAL_RENAME : JOURNAL_REPLACE,
	    .id = id,
	    .src_id = src_id,
	    .src_version = src_version,
	    .old_version = old_fd >= 0 ? old_version : 0,
	    .old_fd = old_fd,
	    .meta = meta,
	    .creator = old ? old->creator : NULL,
	    .filename = old ? old->filename : NULL,
	    .rsu = old ? old->rsu : 0,
	};
	rc = journal_begin(fs->journal, &in, seq);
	free(meta);
	return rc == -ENOMEM || rc == -ENOSPC || rc == -EDQUOT ? rc : rc < 0 ? -EIO : 0;
}

/* Delete-then-upload of an uploaded image. The old bytes and attributes are journaled
 * (fsync'd, pinned) before the delete; a failure after it ends with the old image back,
 * now or from the journal's background retries. New bytes from new_fd, or from url. */
static int replace_upload(struct fs_ctx *fs, struct fs_node *n, const char *id, int new_fd,
			  const char *url, const struct fs_attrs *old, int64_t old_version,
			  const char *path, struct api_image *out, struct api_err *err)
{
	int old_fd;
	uint64_t old_size, seq;
	int rc = fs_blob_fd(fs, id, old_version, path, &old_fd, &old_size);
	if (rc == -ENOENT) /* gone elsewhere already: a plain upload */
		return upload_fd_err(fs, id, new_fd, url, old, strrchr(path, '/') + 1, path, out, err);
	if (rc < 0)
		return rc;
	rc = fs_up_journal_replace(fs, n, id, NULL, 0, old, old_version, old_fd, &seq);
	close(old_fd);
	if (rc < 0)
		return rc; /* nothing deleted: the undo is not durable */
	int deleted = (rc = fs_up_delete_id(fs, id, path)) == 0;
	if (deleted)
		rc = upload_fd_err(fs, id, new_fd, url, old, strrchr(path, '/') + 1, path, out, err);
	if (rc == 0)
		journal_finish(fs->journal, seq);
	else
		rc = fs_up_settle_failed(fs, n, seq, id, old_version, deleted, path, rc, out);
	return rc;
}

/* user.state after an upload of n: "uploading" ends; a failure is kept as "<ERRNO>: <API
 * message>" until the next success clears it. */
static void upload_state_set(struct fs_ctx *fs, struct fs_node *n, int rc,
			     const struct api_err *err)
{
	char text[320], nb[16];
	if (rc < 0)
		snprintf(text, sizeof(text), "%s: %s", fs_errno_name(-rc, nb, sizeof(nb)),
			 err->message[0] ? err->message : strerror(-rc));
	pthread_mutex_lock(&fs->lock);
	n->flags &= ~FS_NF_UPLOADING;
	struct fs_img_extra *x = rc < 0 ? fs_node_extra_locked(n) : n->u.img;
	if (x) {
		free(x->fail);
		x->fail = rc < 0 ? strdup(text) : NULL;
	}
	pthread_mutex_unlock(&fs->lock);
}

/* Uploads n: the staged bytes of w, or with url != NULL the image the API fetches from url
 * (w then only marks n as being written). Called with w->lock held. */
static int upload_w(struct fs_ctx *fs, struct fs_node *n, struct fs_wstate *w, const char *url)
{
	struct fs_attrs a;
	struct api_image img;
	struct api_err err;
	int rc;

	memset(&err, 0, sizeof(err));
	pthread_mutex_lock(&fs->lock);
	n->flags |= FS_NF_UPLOADING;
	int pending = (n->flags & FS_NF_PENDING) != 0;
	int64_t version = n->uploaded_ms;
	char *id = fs_node_id_locked(fs, n);
	char *path = fs_node_path_locked(fs, n);
	int xa_failed = n->u.img && n->u.img->xa_failed;
	rc = fs_attrs_copy_locked(n, &a);
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0 || !id || !path) {
		rc = -ENOMEM;
		upload_state_set(fs, n, rc, &err);
		goto out;
	}
	if (xa_failed) { /* the image stays as it was: bytes, metadata and creator */
		fs_log(FS_LOG_ERR, "not replacing '%s': setting its attributes failed", path);
		rc = -EIO;
		upload_state_set(fs, n, rc, &err);
		goto out;
	}
	/* An unfinished journal entry of this id (an old image being put back) goes first. */
	if (fs->journal)
		journal_wait_id(fs->journal, id, FS_JOURNAL_ORDER_MS);
	if (!url) /* written to disk during the upload: clean, and droppable, once it is stored */
		sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	if (pending)
		rc = upload_fd_err(fs, id, w->fd, url, &a, n->name, path, &img, &err);
	else
		rc = replace_upload(fs, n, id, w->fd, url, &a, version, path, &img, &err);
	upload_state_set(fs, n, rc, &err);
	if (rc < 0)
		goto out;
	if (!pending)
		cache_remove(fs->cache, id);
	if (w->path && !url) {
		if (cache_adopt(fs->cache, id, img.uploaded_ms, w->path) < 0)
			fs_log(FS_LOG_DEBUG, "cannot keep '%s' in the cache", path);
		free(w->path);
		w->path = NULL; /* the fd now reads the cache entry: restage before writing */
		/* Out of the page cache once written: a bulk copy then reuses the same memory for
		 * each staged file instead of taking new (first-touch) pages per image, which
		 * cost the daemon as much CPU as the rest of the upload on a VM (README,
		 * Performance). Reading back reads the entry from disk, still no download. */
		posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
	}
	pthread_mutex_lock(&fs->lock);
	fs_img_set_locked(fs, n, &img);
	n->size = url ? 0 : w->size; /* from a URL: unknown until the first open */
	n->flags = (uint32_t)((n->flags & ~FS_NF_SIZE) | FS_NF_INVAL | (url ? 0 : FS_NF_SIZE));
	n->gen = fs->images.gen;
	pthread_mutex_unlock(&fs->lock);
	if (fs->cfg.stamp_off) /* no stamp: remember size and mtime here (fs_local.c) */
		fs_local_put(fs, id, img.uploaded_ms, url ? -1 : (int64_t)w->size, a.has_mtime,
			     a.mtime_ns);
	api_image_release(&img);
	w->uploaded = 1;
	if (url)
		fs_log(FS_LOG_DEBUG, "uploaded '%s' from a URL", path);
	else
		fs_log(FS_LOG_DEBUG, "uploaded '%s' (%llu bytes)", path,
		       (unsigned long long)w->size);
out:
	fs_attrs_release(&a);
	free(id);
	free(path);
	return rc;
}

/* A new file whose upload failed leaves nothing behind, before close() returns (flush is
 * synchronous; release is not), so the caller never sees a name that does not exist. */
static void drop_failed_new(struct fs_ctx *fs, struct fs_node *n)
{
	char name[256];
	fuse_ino_t parent = 0;
	pthread_mutex_lock(&fs->lock);
	if ((n->flags & FS_NF_PENDING) && (n->flags & FS_NF_LINKED)) {
		parent = n->parent->ino;
		snprintf(name, sizeof(name), "%s", n->name);
		fs_node_unlink_locked(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
	if (parent && fs->se) /* no lock held; flush holds no directory lock in the kernel */
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

int fs_img_flush(struct fs_ctx *fs, struct fs_fh *fh)
{
	struct fs_wstate *w = fh->w;
	int rc = 0;
	if (fh->kind != FS_FH_STAGED || !fh->writable)
		return 0;
	pthread_mutex_lock(&fs->lock);
	int scratch = (fh->node->flags & FS_NF_SCRATCH) != 0;
	int xa_failed = fh->node->u.img && fh->node->u.img->xa_failed;
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_lock(&w->lock);
	if (w->err)
		rc = w->err;
	else if (scratch)
		w->dirty = 0; /* local: uploaded only by a rename to a visible name */
	else if (w->dirty && fs->cfg.writeback) {
		/* an attribute set failed during this replace: as upload_w, keep the image */
		/* the journal may take the staged file over (w->path NULL: restaged on write) */
		rc = xa_failed ? -EIO : fs_wb_stage(fs, fh->node, w->fd, w->size, &w->path);
		if (rc < 0)
			w->err = rc;
		else
			w->uploaded = 1; /* journaled: the node keeps the new size */
		w->dirty = 0;
	} else if (w->dirty) {
		rc = upload_w(fs, fh->node, w, NULL);
		if (rc < 0)
			w->err = rc;
		w->dirty = 0;
	}
	pthread_mutex_unlock(&w->lock);
	if (rc < 0 && !scratch)
		drop_failed_new(fs, fh->node);
	return rc;
}

void fs_img_release(struct fs_ctx *fs, struct fs_fh *fh)
{
	struct fs_wstate *w = fh->w;
	struct fs_node *n = fh->node;
	if (fh->kind != FS_FH_STAGED || !w)
		return;
	if (fh->writable)
		fs_img_flush(fs, fh); /* a dirty handle never flushed: upload_w logs failures */
	pthread_mutex_lock(&fs->lock);
	int last = --w->refs == 0;
	int times = last && !(n->flags & FS_NF_PENDING) && (n->flags & FS_NF_TIMES);
	if (last) {
		n->u.img->w = NULL;
		n->u.img->xa_failed = 0;
		if (!(n->flags & FS_NF_PENDING) && !w->uploaded) {
			/* truncated but never replaced: the image is as it was */
			n->flags &= ~FS_NF_SIZE;
			n->flags |= FS_NF_INVAL | (w->prev_known ? FS_NF_SIZE : 0);
			n->size = w->prev_known ? w->prev_size : 0;
		}
		fs_node_extra_trim_locked(n);
	}
	pthread_mutex_unlock(&fs->lock);
	if (last)
		fs_wstate_free(w);
	fh->w = NULL;
	if (times) /* a mtime set while open that no upload carried */
		fs_times_flush(fs, n);
}

/* ---- scratch files (fs_scratch.c): the staged bytes outlive the handles ------------ */

/* A scratch file is edited in place: any open for writing shares the node's staged state;
 * O_TRUNC empties it. No request. */
static int scratch_open_write(struct fs_ctx *fs, struct fs_node *n, struct fuse_file_info *fi,
			      struct fs_fh **out)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_wstate *w = n->u.img ? n->u.img->w : NULL;
	struct fs_fh *fh = w ? staged_fh(n, w, 1) : NULL;
	if (fh) {
		w->refs++;
		n->nopen++;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!fh)
		return w ? -ENOMEM : -ENOENT;
	if (fi->flags & O_TRUNC) {
		pthread_mutex_lock(&w->lock);
		if (ftruncate(w->fd, 0) == 0) {
			w->size = 0;
			w->err = 0;
			node_size_set(fs, n, 0);
		}
		pthread_mutex_unlock(&w->lock);
	}
	*out = fh;
	return 0;
}

struct fs_wstate *fs_scratch_detach_locked(struct fs_node *n)
{
	struct fs_img_extra *x = n->u.img;
	struct fs_wstate *w = x ? x->w : NULL;
	if (!w || !(n->flags & FS_NF_SCRATCH) || --w->refs > 0)
		return NULL; /* open handles keep it; the last release frees it */
	x->w = NULL;
	fs_node_extra_trim_locked(n);
	return w;
}

/* An fd on a scratch file's bytes for its upload at rename; w->lock is held until
 * scratch_src_done so no write changes them meanwhile. 0 or -errno. */
int fs_up_scratch_src_fd(struct fs_ctx *fs, struct fs_node *n, struct fs_wstate **wp, int *fd)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_wstate *w = n->u.img ? n->u.img->w : NULL;
	if (w)
		w->refs++;
	pthread_mutex_unlock(&fs->lock);
	if (!w)
		return -ENOENT;
	pthread_mutex_lock(&w->lock);
	*fd = w->err ? -1 : dup(w->fd);
	if (*fd < 0) {
		int rc = w->err ? w->err : -errno;
		pthread_mutex_unlock(&w->lock);
		pthread_mutex_lock(&fs->lock);
		w->refs--;
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	*wp = w;
	return 0;
}

/* After the upload: on success the bytes are the image's (a release no longer reverts the
 * size), and the node drops its own reference once the rename is committed. */
void fs_up_scratch_src_done(struct fs_ctx *fs, struct fs_wstate *w, int ok)
{
	if (ok) {
		w->uploaded = 1;
		w->dirty = 0;
	}
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_lock(&fs->lock);
	w->refs--; /* never the last: the node or a handle holds one */
	pthread_mutex_unlock(&fs->lock);
}

/* The node counts as being written during the upload (a writer handle of its own), so other
 * writers, renames and unlinks get EBUSY, and the replace path is the one of O_TRUNC. A
 * writer state still attached but clean is shared instead: the kernel sends RELEASE after
 * close(2) returns, so `touch f && setfattr -n user.url ... f` (or a `cp` just before) can
 * find touch's handle not yet released. Only unsent bytes (dirty) or a failed write make
 * the file busy. */
int fs_img_upload_url(struct fs_ctx *fs, struct fs_node *n, const char *url)
{
	struct fs_fh *fh;
	int rc = fs_img_open_staged(fs, n, &fh);
	if (rc == -EAGAIN)
		rc = attach_writer(fs, n, 0, &fh);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fh->w->lock);
	rc = fh->w->dirty || fh->w->err ? -EBUSY : upload_w(fs, n, fh->w, url);
	pthread_mutex_unlock(&fh->w->lock);
	fs_img_release(fs, fh);
	pthread_mutex_lock(&fs->lock);
	fs_node_release_open_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	fs_fh_free(fh);
	return rc;
}

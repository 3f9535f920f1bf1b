/*
 * fs_images.c - images/: lookup, reading, mkdir, rmdir, unlink.
 *
 * Lookup answers from the table while the listing is fresh (no network). A miss while it
 * is stale costs one GET of that id, so images added elsewhere appear without a full
 * listing; before the first listing, and whenever the account fits one listing page, a
 * lookup runs the listing itself instead (it also reveals directories, which a GET
 * cannot, and answers the next misses for dir_ttl). Negative answers are cached by the kernel for
 * FS_NEG_TIMEOUT.
 *
 * Known names are re-checked once the listing is older than dir_ttl (fs_list.c).
 *
 * Reading goes through the blob cache: the first open of a version downloads it once (the
 * cache single-flights concurrent opens), later opens and remounts read the local copy.
 * Content per (id, uploaded) never changes, so the kernel page cache is kept across opens.
 *
 * Sizes. The list API has no sizes, yet `ls -l` must not cost a GETATTR per file, so
 * readdirplus hands out size 0 with the full attribute timeout (FS_NF_KSTALE). A kernel
 * that believes size 0 would end every cached read at offset 0, so an open of such a node
 * invalidates the kernel's attributes (notify_inval_inode, attributes only) *before* it
 * replies: the reader's fstat and its first read past the cached size then fetch the
 * exact size. Replies built before the size was known and delivered after the
 * invalidation are discarded by the kernel (their attr_version is older). Sending the
 * notification from the open handler cannot deadlock: attribute invalidation takes no
 * inode or page lock, and the inode is pinned by the opening file.
 */
#include "fs.h"
#include "journal.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void reply_negative(fuse_req_t req)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.entry_timeout = FS_NEG_TIMEOUT;
	fuse_reply_entry(req, &e);
}

static char *child_id(const char *dir_id, const char *name)
{
	size_t dl = strlen(dir_id), nl = strlen(name);
	char *s = malloc(dl + nl + 2);
	if (!s)
		return NULL;
	if (dl) {
		memcpy(s, dir_id, dl);
		s[dl++] = '/';
	}
	memcpy(s + dl, name, nl + 1);
	return s;
}

/* Answers from the table; returns 1 when replied. */
static int lookup_table(fuse_req_t req, struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	struct fuse_entry_param e;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	if (n)
		fs_node_entry_locked(fs, n, &e);
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return 0;
	fuse_reply_entry(req, &e);
	return 1;
}

/* The error of a remote lookup of (dir, name) that failed less than FS_FAIL_HOLD_MS ago,
 * or 0. Callers hold no lock. */
static int recent_failure(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	struct fs_failed_lookup *f = &fs->failed_lookup;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	if (f->ms && f->dir == dir->ino && strcmp(f->name, name) == 0 &&
	    fs_now_ms() - f->ms < FS_FAIL_HOLD_MS)
		rc = f->rc;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

static void remember_failure(struct fs_ctx *fs, struct fs_node *dir, const char *name, int rc)
{
	struct fs_failed_lookup *f = &fs->failed_lookup;

	pthread_mutex_lock(&fs->lock);
	f->dir = dir->ino;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->ms = fs_now_ms();
	f->rc = rc;
	pthread_mutex_unlock(&fs->lock);
}

static void lookup_remote(fuse_req_t req, struct fs_ctx *fs, struct fs_node *dir, const char *name,
			  char *dir_id)
{
	struct api_image img;
	struct api_err err;
	struct fuse_entry_param e;
	char *id = child_id(dir_id, name);
	free(dir_id);
	if (!id) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int rc = recent_failure(fs, dir, name);
	if (rc < 0) {
		free(id);
		fuse_reply_err(req, -rc);
		return;
	}
	rc = api_image_get(fs->api, id, &img, &err);
	if (rc == 0 && journal_hides(fs->journal, id)) { /* renamed away; delete pending */
		api_image_release(&img);
		rc = -ENOENT;
	}
	if (rc == -ENOENT) {
		free(id);
		reply_negative(req);
		return;
	}
	if (rc < 0) {
		char path[1100];
		snprintf(path, sizeof(path), "images/%s", id);
		free(id);
		remember_failure(fs, dir, name, rc);
		fuse_reply_err(req, -fs_log_api("look up", path, rc, &err));
		return;
	}
	free(id);
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = img.draft ? NULL : fs_images_apply_locked(fs, &img);
	if (n && n->parent == dir)
		fs_node_entry_locked(fs, n, &e);
	else
		n = NULL;
	pthread_mutex_unlock(&fs->lock);
	api_image_release(&img);
	if (n)
		fuse_reply_entry(req, &e);
	else
		reply_negative(req);
}

void fs_img_lookup(fuse_req_t req, struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_node *known = fs_node_child_locked(fs, dir, name);
	if (known && fs_img_recheck_due_locked(fs, known))
		known->nopen++; /* pinned across the re-check */
	else
		known = NULL;
	pthread_mutex_unlock(&fs->lock);
	if (known) {
		fs_img_recheck(fs, known);
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, known);
		pthread_mutex_unlock(&fs->lock);
	}
	if (lookup_table(req, fs, dir, name))
		return;
	if (known) { /* re-checked and gone */
		reply_negative(req);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	/* One page of listing costs what one GET of the name costs and answers every other miss
	 * for dir_ttl: what rsync needs, which probes two missing names per file (the target
	 * and its temp file). Only larger accounts ask for the single id. */
	int never = fs->images.fresh_ms == 0 || fs->n_images < FS_LIST_ONE_PAGE;
	int stale = fs_listing_stale_locked(fs, &fs->images);
	char *dir_id = stale && !never ? fs_node_id_locked(fs, dir) : NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!stale || !fs_name_valid(name)) {
		free(dir_id);
		reply_negative(req);
		return;
	}
	if (never) {
		int rc = fs_images_refresh(fs, 0);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		if (!lookup_table(req, fs, dir, name))
			reply_negative(req);
		return;
	}
	if (!dir_id) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	lookup_remote(req, fs, dir, name, dir_id);
}

/* ---- reading ------------------------------------------------------------------ */

static void reply_open_fh(fuse_req_t req, struct fs_ctx *fs, struct fuse_file_info *fi,
			  struct fs_fh *fh)
{
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) { /* interrupted: no release will come */
		if (fh->kind == FS_FH_STAGED)
			fs_img_release(fs, fh);
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, fh->node);
		pthread_mutex_unlock(&fs->lock);
		fs_fh_free(fh);
	}
}

/* *inval: the content changed since the kernel last saw it (drop its page cache);
 * *kattr: the kernel may hold a wrong size (invalidate its attributes before replying). */
static int open_blob(struct fs_ctx *fs, struct fs_node *n, struct fs_fh **out, int *inval,
		     int *kattr)
{
	int fd = -1, tries = 0;
	uint64_t size = 0;

again:
	pthread_mutex_lock(&fs->lock);
	if (n->u.img && n->u.img->w) {
		pthread_mutex_unlock(&fs->lock);
		int rc = fs_img_open_staged(fs, n, out);
		/* -EAGAIN: the writer's release ran since we looked; read the image instead */
		if (rc != -EAGAIN || tries++ > 0)
			return rc;
		goto again;
	}
	/* a journaled write-back upload reads its pinned bytes through fs_blob_fd */
	int pending = (n->flags & FS_NF_PENDING) && !(n->flags & FS_NF_WB);
	int64_t version = n->uploaded_ms;
	int known = (n->flags & FS_NF_SIZE) != 0;
	*inval = (n->flags & FS_NF_INVAL) != 0;
	char *id = pending ? NULL : fs_node_id_locked(fs, n);
	char *path = pending ? NULL : fs_node_path_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (!pending && (!id || !path)) {
		free(id);
		free(path);
		return -ENOMEM;
	}
	if (!pending) {
		int rc = fs_blob_fd(fs, id, version, path, &fd, &size);
		if (rc == 0 && !known) /* remembered across remounts and evictions */
			fs_local_put(fs, id, version, (int64_t)size, 0, 0);
		free(id);
		free(path);
		if (rc == -ENOENT)
			fs_img_drop_gone(fs, n, version);
		if (rc < 0)
			return rc;
	}
	struct fs_fh *fh = calloc(1, sizeof(*fh));
	if (!fh) {
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	fh->kind = FS_FH_BLOB;
	fh->fd = fd;
	fh->node = n;
	pthread_mutex_lock(&fs->lock);
	if (!pending && n->uploaded_ms == version) {
		n->size = size;
		n->flags |= FS_NF_SIZE;
		n->flags &= ~FS_NF_INVAL;
	}
	*kattr = *inval || (n->flags & FS_NF_KSTALE);
	n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	*out = fh;
	return 0;
}

void fs_img_open(fuse_req_t req, struct fs_ctx *fs, struct fs_node *n, struct fuse_file_info *fi)
{
	struct fs_fh *fh = NULL;
	int inval = 0, kattr = 0, rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		rc = fs_img_open_write(fs, n, fi, &fh);
	else if ((rc = fs_img_recheck(fs, n)) == 0)
		rc = open_blob(fs, n, &fh, &inval, &kattr);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (kattr && fs->se) { /* see the note at the top: before the reply */
		atomic_fetch_add_explicit(&fs->ops.inval_attr, 1, memory_order_relaxed);
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, -1, 0);
	}
	if (fh->kind == FS_FH_STAGED) {
		fi->direct_io = 1; /* bytes still changing: no page cache */
	} else {
		fi->keep_cache = !inval;
		fi->noflush = 1; /* nothing to upload: close(2) need not wait for a FLUSH */
	}
	reply_open_fh(req, fs, fi, fh);
}

void fs_img_read(fuse_req_t req, struct fs_ctx *fs, struct fs_fh *fh, size_t size, off_t off)
{
	if (fh->kind == FS_FH_STAGED) {
		char *buf = malloc(size ? size : 1);
		ssize_t got = 0;
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		int rc = fs_img_read_staged(fh, buf, size, off, &got);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_buf(req, buf, (size_t)got);
		free(buf);
		return;
	}
	if (fh->fd < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fh->fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/* ---- directories and unlink ------------------------------------------------------ */

int fs_img_mkdir(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		 struct fuse_entry_param *e)
{
	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	if (!fs_name_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	int rc = 0;
	char *id = fs_node_id_locked(fs, dir);
	struct fs_node *n;
	if (!id)
		rc = -ENOMEM;
	else if (strlen(id) + strlen(name) + 3 > API_MAX_ID_LEN)
		rc = -ENAMETOOLONG; /* no image id could live below it */
	else if (fs_node_child_locked(fs, dir, name))
		rc = -EEXIST;
	else if (!(n = fs_node_new_locked(fs, dir, name, FS_K_DIR)))
		rc = -ENOMEM;
	else {
		n->flags |= FS_NF_LOCALDIR;
		n->gen = fs->images.gen;
		fs_node_entry_locked(fs, n, e);
	}
	pthread_mutex_unlock(&fs->lock);
	free(id);
	return rc;
}

int fs_img_rmdir(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	int rc = 0;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	if (!n)
		rc = -ENOENT;
	else if (n->kind != FS_K_DIR)
		rc = -ENOTDIR;
	else if (n->u.first_child)
		rc = -ENOTEMPTY;
	else
		fs_node_unlink_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* Removes n from the table after a delete; keeps its now-empty parent as a local dir. */
static void unlink_done_locked(struct fs_ctx *fs, struct fs_node *n, const char *id)
{
	struct fs_node *dir = n->parent;
	if (id)
		fs_tomb_add_locked(fs, id);
	fs_node_unlink_locked(fs, n);
	if (!dir->u.first_child && dir->ino != FS_INO_IMAGES)
		dir->flags |= FS_NF_LOCALDIR;
}

int fs_img_unlink(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	int wrc = fs_wb_wait_child(fs, dir, name); /* ordered after a pending upload */
	if (wrc < 0)
		return wrc;
	struct api_err err;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	int rc = 0;
	if (!n)
		rc = -ENOENT;
	else if (n->kind != FS_K_IMG)
		rc = -EISDIR;
	else if (fs_node_is_scratch_locked(n)) { /* local: its bytes go (fs_scratch.c) */
		struct fs_wstate *w = fs_scratch_detach_locked(n);
		unlink_done_locked(fs, n, NULL);
		pthread_mutex_unlock(&fs->lock);
		if (w)
			fs_wstate_free(w);
		return 0;
	} else if (n->u.img && n->u.img->w)
		rc = -EBUSY; /* being written: the upload at close would bring it back */
	else if (n->flags & FS_NF_PENDING)
		unlink_done_locked(fs, n, NULL), n = NULL;
	if (rc < 0 || !n) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	char *id = fs_node_id_locked(fs, n);
	char *path = fs_node_path_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (!id || !path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = api_image_delete(fs->api, id, &err);
	if (rc == -ENOENT)
		rc = 0; /* already gone elsewhere: the name goes too */
	if (rc < 0) {
		fs_log_api("delete", path, rc, &err);
		goto out;
	}
	cache_remove(fs->cache, id);
	pthread_mutex_lock(&fs->lock);
	if (fs_node_child_locked(fs, dir, name) == n)
		unlink_done_locked(fs, n, id);
	pthread_mutex_unlock(&fs->lock);
out:
	free(id);
	free(path);
	return rc;
}

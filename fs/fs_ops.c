/*
 * fs_ops.c - the fuse_lowlevel_ops table: resolves inodes and dispatches by node kind.
 *
 * Every refusal here is deliberate and listed in fs/SEMANTICS.md (checked by
 * tests/e2e/t_fs_semantics.sh). The root is read-only (mode 0555: EACCES); links, symlinks
 * and device nodes have no meaning in the Images API (EPERM).
 */
#include "fs.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct fs_ctx *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fs_fh *fh_of(struct fuse_file_info *fi)
{
	return fi ? (struct fs_fh *)(uintptr_t)fi->fh : NULL;
}

/* Resolves ino; returns its kind or -1 (then *np is NULL). */
static int node_kind(struct fs_ctx *fs, fuse_ino_t ino, struct fs_node **np)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_get_locked(fs, ino);
	int kind = n ? n->kind : -1;
	pthread_mutex_unlock(&fs->lock);
	*np = n;
	return kind;
}

/* renditions/ is read-only: every change below it is EROFS (replied here). */
static int rend_refused(fuse_req_t req, fuse_ino_t a, fuse_ino_t b)
{
	if (!fs_rend_is(a) && !fs_rend_is(b))
		return 0;
	fuse_reply_err(req, EROFS);
	return 1;
}

#define FS_MAX_WRITE (1024 * 1024)

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Big requests: a 1 MB image is written in one FUSE_WRITE when the writer's buffer is
	 * that big (st_blksize below invites it) and readdirplus pages are as large as the
	 * kernel allows. libfuse's buffer caps max_write; never raise it past that. */
	if (conn->max_write > FS_MAX_WRITE)
		conn->max_write = FS_MAX_WRITE;
	conn->max_background = 64; /* readahead of 8+ parallel readers */
	conn->congestion_threshold = 48;
	fs_log(FS_LOG_DEBUG, "fuse: proto %u.%u, max_write %u, max_read %u, max_readahead %u",
	       conn->proto_major, conn->proto_minor, conn->max_write, conn->max_read,
	       conn->max_readahead);
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO; /* always plus: ls -l needs no lookups */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC; /* O_TRUNC reaches open() */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;       /* writes reach us in order, at once */
	/* Lookups and readdirs of one directory run side by side (the kernel still serializes
	 * create, unlink and rename there): one lookup waiting on the network must not hold up
	 * every other name in images/. The table has its own lock. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_node *dir;
	struct fuse_entry_param e;
	int kind, rc;

	atomic_fetch_add_explicit(&fs->ops.lookup, 1, memory_order_relaxed);
	if (fs_rend_is(parent)) {
		fs_rend_lookup(req, fs, parent, name);
		return;
	}
	kind = node_kind(fs, parent, &dir);
	if (kind == FS_K_DIR) {
		fs_img_lookup(req, fs, dir, name);
		return;
	}
	if (kind == FS_K_ROOT || kind == FS_K_CTLDIR) {
		pthread_mutex_lock(&fs->lock);
		struct fs_node *n = fs_node_child_locked(fs, dir, name);
		if (n)
			fs_node_entry_locked(fs, n, &e);
		pthread_mutex_unlock(&fs->lock);
		rc = n ? 0 : -ENOENT;
	} else if (kind == FS_K_VARDIR || kind == FS_K_KEYDIR) {
		rc = fs_special_lookup(fs, dir, name, &e);
	} else {
		rc = kind < 0 ? -ENOENT : -ENOTDIR;
	}
	if (rc == -ENOENT && kind >= 0) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FS_NEG_TIMEOUT;
		rc = 0;
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs_ctx *fs = ctx(req);
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_get_locked(fs, ino);
	if (n)
		fs_node_forget_locked(fs, n, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs_ctx *fs = ctx(req);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++) {
		struct fs_node *n = fs_node_get_locked(fs, forgets[i].ino);
		if (n)
			fs_node_forget_locked(fs, n, forgets[i].nlookup);
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct stat st;
	double timeout = 0;
	atomic_fetch_add_explicit(&fs->ops.getattr, 1, memory_order_relaxed);
	if (fs_rend_is(ino) && ino != FS_INO_RENDITIONS) {
		fs_rend_getattr(req, fs, ino);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_get_locked(fs, ino);
	pthread_mutex_unlock(&fs->lock);
	/* The kernel holds ino, so n stays valid; an open file (fstat) keeps what it has. */
	if (n && !fi && fs_img_recheck(fs, n) == -ENOENT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	if (n) {
		fs_node_attr_locked(fs, n, &st);
		timeout = fs_node_attr_timeout_locked(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
	if (n)
		fuse_reply_attr(req, &st, timeout);
	else
		fuse_reply_err(req, ENOENT);
}

/* Mode and owner changes: accepted and ignored on images and directories (modes come from
 * umask=, owners from uid=/gid=; the API stores neither), so `rsync -a`, `cp -a` and `mv`
 * exit 0. The root, stats and .imagesfs/ are fixed (EPERM). Times are stored on images (fs_times.c)
 * and accepted without effect elsewhere. Returns 0 or -errno; never changes anything. */
static int setattr_check_locked(struct fs_ctx *fs, struct fs_node *n, const struct stat *attr,
				int to_set)
{
	struct stat cur;
	fs_node_attr_locked(fs, n, &cur);
	if (n->kind != FS_K_ROOT && n->kind != FS_K_STATS && n->kind != FS_K_CTLDIR &&
	    n->kind != FS_K_CTL)
		return 0;
	if ((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != (cur.st_mode & 07777))
		return -EPERM;
	if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != cur.st_uid)
		return -EPERM;
	if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != cur.st_gid)
		return -EPERM;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		      FUSE_SET_ATTR_MTIME_NOW))
		return -EPERM;
	return 0;
}

/* The mtime a setattr asks for (NULL: none). */
static const struct timespec *setattr_mtime(const struct stat *attr, int to_set,
					    struct timespec *now)
{
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		clock_gettime(CLOCK_REALTIME, now);
		return now;
	}
	return to_set & FUSE_SET_ATTR_MTIME ? &attr->st_mtim : NULL;
}

static int setattr_size(struct fs_ctx *fs, struct fs_node *n, struct fs_fh *fh, off_t size)
{
	if (fh && fh->kind == FS_FH_STAGED && fh->writable)
		return fs_img_truncate(fs, fh, size);
	if (fh && fh->kind == FS_FH_BUF && fh->writable)
		return fs_special_truncate(fh, size);
	if (n->kind == FS_K_STATS)
		return -EACCES;
	if (n->kind == FS_K_CTL) /* `>` opens with O_TRUNC; only writable files take it */
		return (fs_ctl_mode(n) & 0200) && size == 0 ? 0 : -EACCES;
	if (n->kind != FS_K_IMG)
		return n->kind == FS_K_DIR ? -EISDIR : -EPERM;
	pthread_mutex_lock(&fs->lock);
	int same = (n->flags & FS_NF_SIZE) && n->size == (uint64_t)size;
	pthread_mutex_unlock(&fs->lock);
	return same ? 0 : -EPERM; /* truncate(2) without an O_TRUNC open: no in-place edits */
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	if (rend_refused(req, ino, ino))
		return;
	struct fs_ctx *fs = ctx(req);
	struct stat st;
	int rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_get_locked(fs, ino);
	rc = !n ? -ENOENT : fs->cfg.ro ? -EROFS : setattr_check_locked(fs, n, attr, to_set);
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		rc = setattr_size(fs, n, fh_of(fi), attr->st_size);
	struct timespec now;
	if (rc == 0 && n->kind == FS_K_IMG && !fs->cfg.ro)
		rc = fs_img_set_mtime(fs, n, setattr_mtime(attr, to_set, &now));
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	fs_node_attr_locked(fs, n, &st);
	double timeout = fs_node_attr_timeout_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_attr(req, &st, timeout);
}

/* errno for creating/removing names in a directory of this kind that does not allow it. */
static int refuse_in(struct fs_ctx *fs, int kind)
{
	if (kind < 0)
		return ENOENT;
	if (fs->cfg.ro)
		return EROFS;
	if (kind == FS_K_ROOT || kind == FS_K_CTLDIR)
		return EACCES;
	if (kind == FS_K_IMG || kind == FS_K_CTL || kind == FS_K_VAR || kind == FS_K_KEY ||
	    kind == FS_K_STATS)
		return ENOTDIR;
	return EPERM;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	if (rend_refused(req, parent, parent))
		return;
	struct fs_node *dir;
	int kind = node_kind(ctx(req), parent, &dir);
	fuse_reply_err(req, ctx(req)->cfg.ro			       ? EROFS
			    : kind == FS_K_ROOT || kind == FS_K_CTLDIR ? EACCES
								       : EPERM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	if (rend_refused(req, parent, parent))
		return;
	struct fs_ctx *fs = ctx(req);
	struct fs_node *dir;
	struct fuse_entry_param e;
	int kind = node_kind(fs, parent, &dir);
	if (kind != FS_K_DIR || fs->cfg.ro) {
		fuse_reply_err(req, refuse_in(fs, kind));
		return;
	}
	int rc = fs_img_mkdir(fs, dir, name, &e);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

/* unlink (is_rmdir 0) or rmdir of name in parent */
static void do_remove(fuse_req_t req, fuse_ino_t parent, const char *name, int is_rmdir)
{
	if (rend_refused(req, parent, parent))
		return;
	struct fs_ctx *fs = ctx(req);
	struct fs_node *dir;
	int kind = node_kind(fs, parent, &dir), rc;
	if (fs->cfg.ro || kind < 0 || kind == FS_K_ROOT || kind == FS_K_CTLDIR)
		rc = -refuse_in(fs, kind);
	else if (kind == FS_K_DIR)
		rc = is_rmdir ? fs_img_rmdir(fs, dir, name) : fs_img_unlink(fs, dir, name);
	else if (!is_rmdir && (kind == FS_K_VARDIR || kind == FS_K_KEYDIR))
		rc = fs_special_unlink(fs, dir, name);
	else
		rc = -ENOTDIR; /* a variant, a key, stats, an image; rmdir in variants/, keys/ */
	fuse_reply_err(req, -rc);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, 1);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (rend_refused(req, parent, parent))
		return;
	struct fs_node *dir;
	int kind = node_kind(ctx(req), parent, &dir);
	fuse_reply_err(req, ctx(req)->cfg.ro ? EROFS : kind == FS_K_ROOT ? EACCES : EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	if (rend_refused(req, newparent, newparent))
		return;
	struct fs_node *dir;
	int kind = node_kind(ctx(req), newparent, &dir);
	fuse_reply_err(req, ctx(req)->cfg.ro ? EROFS : kind == FS_K_ROOT ? EACCES : EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	if (rend_refused(req, parent, newparent))
		return;
	struct fs_ctx *fs = ctx(req);
	struct fs_node *od, *nd;
	int ok = node_kind(fs, parent, &od), nk = node_kind(fs, newparent, &nd), rc;
	if (ok < 0 || nk < 0)
		rc = -ENOENT;
	else if (fs->cfg.ro)
		rc = -EROFS;
	else if (ok == FS_K_ROOT || nk == FS_K_ROOT || ok == FS_K_CTLDIR || nk == FS_K_CTLDIR)
		rc = -EACCES;
	else if (flags & RENAME_EXCHANGE)
		rc = -EINVAL;
	else if (ok != nk)
		rc = -EXDEV; /* across images/, variants/, keys/ */
	else if (ok == FS_K_DIR)
		rc = fs_img_rename(fs, od, name, nd, newname, flags);
	else if (ok == FS_K_VARDIR)
		rc = -EXDEV; /* mv copies the document to a new variant, then removes the old */
	else
		rc = -EPERM; /* keys: names are fixed, values generated */
	fuse_reply_err(req, -rc);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_node *n;
	struct fs_fh *fh = NULL;
	int kind = node_kind(fs, ino, &n), rc;
	int writing = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);

	atomic_fetch_add_explicit(&fs->ops.open, 1, memory_order_relaxed);
	if (fs_rend_is(ino)) {
		fs_rend_open(req, fs, ino, fi);
		return;
	}
	if (kind == FS_K_IMG) {
		fs_img_open(req, fs, n, fi);
		return;
	}
	if (kind == FS_K_CTL)
		rc = fs_ctl_open(fs, n, fi->flags, &fh);
	else if (kind < 0)
		rc = -ENOENT;
	else if (kind != FS_K_VAR && kind != FS_K_KEY && kind != FS_K_STATS)
		rc = -EISDIR;
	else if (writing && fs->cfg.ro && kind != FS_K_STATS)
		rc = -EROFS;
	else
		rc = fs_special_open(fs, n, fi->flags, &fh);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, n);
		pthread_mutex_unlock(&fs->lock);
		fs_fh_free(fh);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	if (rend_refused(req, parent, parent))
		return;
	struct fs_ctx *fs = ctx(req);
	struct fs_node *dir;
	struct fuse_entry_param e;
	struct fs_fh *fh = NULL;
	int kind = node_kind(fs, parent, &dir);

	if (kind == FS_K_DIR && !fs->cfg.ro) {
		fs_img_create(req, fs, dir, name, fi);
		return;
	}
	if ((kind != FS_K_VARDIR && kind != FS_K_KEYDIR) || fs->cfg.ro) {
		fuse_reply_err(req, refuse_in(fs, kind));
		return;
	}
	int rc = fs_special_create(fs, dir, name, &e, &fh);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		fs_special_release(fs, fh);
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, fh->node);
		pthread_mutex_unlock(&fs->lock);
		fs_fh_free(fh);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_fh *fh = fh_of(fi);
	if (fh->kind == FS_FH_REND)
		fs_rend_read(req, fh, size, off);
	else if (fh->kind == FS_FH_BUF)
		fs_special_read(req, fh, size, off);
	else if (fh->kind == FS_FH_CTL)
		fs_ctl_read(req, fh, size, off);
	else
		fs_img_read(req, ctx(req), fh, size, off);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs_fh *fh = fh_of(fi);
	ssize_t rc;
	if (fh->kind == FS_FH_STAGED)
		rc = fs_img_write(ctx(req), fh, buf, size, off);
	else if (fh->kind == FS_FH_BUF)
		rc = fs_special_write(fh, buf, size, off);
	else if (fh->kind == FS_FH_CTL)
		rc = fs_ctl_write(ctx(req), fh, buf, size);
	else
		rc = -EBADF;
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else
		fuse_reply_write(req, (size_t)rc);
}

static int flush_fh(struct fs_ctx *fs, struct fs_fh *fh)
{
	if (fh->kind == FS_FH_STAGED)
		return fs_img_flush(fs, fh);
	if (fh->kind == FS_FH_BUF)
		return fs_special_flush(fs, fh);
	return 0;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -flush_fh(ctx(req), fh_of(fi)));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_fh *fh = fh_of(fi);
	int rc = flush_fh(fs, fh); /* fsync = upload now (write-back: wait for the upload) */
	if (rc == 0 && fh->kind == FS_FH_STAGED && fs->cfg.writeback)
		rc = fs_wb_wait_node(fs, fh->node);
	fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_fh *fh = fh_of(fi);
	if (fh->kind == FS_FH_REND) { /* no node: a virtual inode */
		fs_fh_free(fh);
		fuse_reply_err(req, 0);
		return;
	}
	if (fh->kind == FS_FH_STAGED)
		fs_img_release(fs, fh);
	else if (fh->kind == FS_FH_BUF)
		fs_special_release(fs, fh);
	pthread_mutex_lock(&fs->lock);
	fs_node_release_open_locked(fs, fh->node);
	pthread_mutex_unlock(&fs->lock);
	if (fh->kind == FS_FH_CTL)
		fs_ctl_release(fh);
	else
		fs_fh_free(fh);
	fuse_reply_err(req, 0);
}

/* ---- directories ------------------------------------------------------------------ */

static int dir_refresh(struct fs_ctx *fs, int kind)
{
	if (kind == FS_K_DIR) {
		int rc = fs_images_refresh(fs, 0);
		pthread_mutex_lock(&fs->lock);
		int have = fs->images.fresh_ms != 0;
		pthread_mutex_unlock(&fs->lock);
		return rc < 0 && have ? 0 : rc; /* serve the last listing while the API fails */
	}
	if (kind == FS_K_VARDIR)
		return fs_variants_refresh(fs, 0);
	if (kind == FS_K_KEYDIR)
		return fs_keys_refresh(fs, 0);
	return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_node *dir;
	if (fs_rend_is(ino)) {
		fs_rend_opendir(req, fs, ino, fi);
		return;
	}
	int kind = node_kind(fs, ino, &dir);
	int rc = kind < 0 ? -ENOENT : dir_refresh(fs, kind);
	struct fs_fh *fh = rc == 0 ? calloc(1, sizeof(*fh)) : NULL;
	if (rc == 0 && !fh)
		rc = -ENOMEM;
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fh->kind = FS_FH_DIR;
	fh->fd = -1;
	pthread_mutex_lock(&fs->lock);
	size_t n = 0;
	for (struct fs_node *c = dir->u.first_child; c; c = c->next)
		n++;
	fuse_ino_t *inos = malloc((n ? n : 1) * sizeof(*inos));
	if (inos) {
		n = 0;
		for (struct fs_node *c = dir->u.first_child; c; c = c->next)
			inos[n++] = c->ino;
	}
	fh->buf = (char *)inos;
	fh->len = inos ? n : 0;
	fh->node = dir;
	dir->nopen++;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, dir);
		pthread_mutex_unlock(&fs->lock);
		fs_fh_free(fh);
	}
}

/* An fs_dirent_fn for the directories of the table (FS_FH_DIR). */
static size_t dir_add_locked(fuse_req_t req, struct fs_ctx *fs, struct fs_fh *fh, size_t idx,
			     char *buf, size_t room, int plus)
{
	struct fs_node *n;
	const char *name;
	if (idx < 2) {
		n = idx == 0 || !fh->node->parent ? fh->node : fh->node->parent;
		name = idx == 0 ? "." : "..";
	} else {
		n = fs_node_get_locked(fs, ((fuse_ino_t *)fh->buf)[idx - 2]);
		if (!n || !(n->flags & FS_NF_LINKED) || n->parent != fh->node)
			return (size_t)-1;
		name = n->name;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	e.generation = 1;
	fs_node_attr_locked(fs, n, &e.attr);
	size_t used;
	if (plus) {
		e.attr_timeout = fs_node_dirplus_timeout_locked(fs, n);
		e.entry_timeout = fs_node_entry_timeout_locked(fs, n);
		used = fuse_add_direntry_plus(req, buf, room, name, &e, (off_t)(idx + 1));
	} else {
		used = fuse_add_direntry(req, buf, room, name, &e.attr, (off_t)(idx + 1));
	}
	if (used > room)
		return 0;
	if (plus && idx >= 2) {
		n->nlookup++; /* the kernel counts a lookup for every entry it receives */
		if (n->kind == FS_K_IMG && !(n->flags & FS_NF_SIZE) && e.attr_timeout > 0)
			n->flags |= FS_NF_KSTALE;
	}
	return used;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_fh *fh = fh_of(fi);
	/* a renditions/ directory's snapshot holds its own entries (fs_renditions.c) */
	fs_dirent_fn add = fh->kind == FS_FH_REND_DIR ? fs_rend_dirent_locked : dir_add_locked;
	char *buf = malloc(size);
	size_t pos = 0;
	atomic_fetch_add_explicit(plus ? &fs->ops.readdirplus : &fs->ops.readdir, 1,
				  memory_order_relaxed);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	for (size_t idx = off < 0 ? 0 : (size_t)off; idx < fh->len + 2; idx++) {
		size_t used = add(req, fs, fh, idx, buf + pos, size - pos, plus);
		if (used == (size_t)-1)
			continue;
		if (used == 0)
			break;
		pos += used;
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct fs_fh *fh = fh_of(fi);
	if (fh->kind != FS_FH_REND_DIR) { /* renditions/ dirs hold no node */
		pthread_mutex_lock(&fs->lock);
		fs_node_release_open_locked(fs, fh->node);
		pthread_mutex_unlock(&fs->lock);
	}
	fs_fh_free(fh);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* user.url is an action, not an attribute (fs_url.c); every other name is fs_xattr.c's. A
 * change on an image with a pending write-back upload follows the upload. */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	int rc = fs_wb_wait_ino(ctx(req), ino);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (strcmp(name, FS_XATTR_URL) == 0)
		fs_url_op_setxattr(req, ino, value, size);
	else
		fs_op_setxattr(req, ino, name, value, size, flags);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	int rc = fs_wb_wait_ino(ctx(req), ino);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fs_op_removexattr(req, ino, name);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .link = op_link,
    .rename = op_rename,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .fsync = op_fsync,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = fs_op_statfs,
    .setxattr = op_setxattr,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
    .removexattr = op_removexattr,
};

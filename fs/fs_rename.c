/*
 * fs_rename.c - images/: renaming an image (upload under the new id, then delete the old
 * one), journaled like a replace when the destination is an image (fs_upload.c has the
 * upload and journal steps both share, declared in fs_upload.h).
 */
#include "fs.h"
#include "fs_upload.h"
#include "journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rn_side {
	struct fs_node *n;
	char *id, *path;
	struct fs_attrs a;
	int64_t version;
	int pending;
	int scratch; /* src: a scratch file, uploaded from its staged bytes */
};

static void rn_side_release(struct rn_side *s)
{
	free(s->id);
	free(s->path);
	fs_attrs_release(&s->a);
}

/* Checks the rename and snapshots both sides; returns 0, 1 (nothing to do) or -errno. */
static int rename_prepare_locked(struct fs_ctx *fs, struct fs_node *odir, const char *oname,
				 struct fs_node *ndir, const char *nname, unsigned int flags,
				 struct rn_side *src, struct rn_side *dst)
{
	struct fs_node *s = fs_node_child_locked(fs, odir, oname);
	if (!s)
		return -ENOENT;
	if (s->kind == FS_K_DIR)
		return -EXDEV; /* mv then copies image by image (see SEMANTICS.md) */
	struct fs_node *d = fs_node_child_locked(fs, ndir, nname);
	if (d == s)
		return 1;
	if (d && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (d && d->kind == FS_K_DIR)
		return -EISDIR;
	int s_scratch = (s->flags & FS_NF_SCRATCH) != 0; /* closed or not: its bytes are local */
	int d_scratch = d && (d->flags & FS_NF_SCRATCH);
	if ((!s_scratch && ((s->u.img && s->u.img->w) || s->nopen)) ||
	    (d && ((!d_scratch && d->u.img && d->u.img->w) || d->nopen)))
		return -EBUSY;
	src->n = s;
	src->scratch = s_scratch;
	src->pending = (s->flags & FS_NF_PENDING) != 0;
	src->version = s->uploaded_ms;
	src->id = fs_node_id_locked(fs, s);
	src->path = fs_node_path_locked(fs, s);
	dst->id = fs_up_child_id_locked(fs, ndir, nname);
	dst->path = fs_node_path_locked(fs, ndir);
	if (!src->id || !src->path || !dst->id || !dst->path || fs_attrs_copy_locked(s, &src->a))
		return -ENOMEM;
	if (d) {
		dst->n = d;
		dst->pending = (d->flags & FS_NF_PENDING) != 0;
		dst->version = d->uploaded_ms;
		if (fs_attrs_copy_locked(d, &dst->a))
			return -ENOMEM;
	}
	return 0;
}

/* Final table update: the source node itself takes the new name (the kernel keeps its
 * inode; handles opened during the rename keep their node). The bytes are the same, so an
 * exact size stays exact and the kernel's page cache stays valid. */
static int rename_commit(struct fs_ctx *fs, struct rn_side *src, struct rn_side *dst,
			 struct fs_node *ndir, const char *nname, const struct api_image *img)
{
	struct fs_wstate *drop[2] = {NULL, NULL};
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = src->n, *odir = n->parent;
	struct fs_node *d = fs_node_child_locked(fs, ndir, nname);
	if (d && d != n) {
		fs_tomb_add_locked(fs, dst->id);
		drop[0] = fs_scratch_detach_locked(d);
		fs_node_unlink_locked(fs, d);
	}
	if (src->scratch && img) { /* uploaded: an image now, no longer local */
		drop[1] = fs_scratch_detach_locked(n);
		n->flags &= ~FS_NF_SCRATCH;
	}
	if (!src->pending)
		fs_tomb_add_locked(fs, src->id);
	int rc = fs_node_move_locked(fs, n, ndir, nname);
	if (rc == 0 && img) {
		uint64_t size = n->size;
		uint32_t keep = n->flags & (FS_NF_SIZE | FS_NF_INVAL);
		fs_img_set_locked(fs, n, img);
		n->size = size;
		n->flags = (uint32_t)((n->flags & ~(FS_NF_SIZE | FS_NF_INVAL)) | keep);
		n->gen = fs->images.gen;
	}
	if (!odir->u.first_child && odir->ino != FS_INO_IMAGES)
		odir->flags |= FS_NF_LOCALDIR;
	pthread_mutex_unlock(&fs->lock);
	for (int i = 0; i < 2; i++)
		if (drop[i])
			fs_wstate_free(drop[i]);
	return rc;
}

/* The upload under the new id is done: delete the old one. A failure is retried by the
 * journal in the background, and the old name is hidden meanwhile (journal_hides). */
static void rename_delete_src(struct fs_ctx *fs, struct rn_side *src, const char *dpath,
			      uint64_t seq)
{
	journal_mark_committed(fs->journal, seq);
	if (fs_up_delete_id(fs, src->id, src->path) == 0) {
		journal_finish(fs->journal, seq);
		cache_remove(fs->cache, src->id);
		return;
	}
	journal_defer(fs->journal, seq);
	fs_log(FS_LOG_WARN,
	       "renamed '%s' to '%s'; the old id is deleted in the background (journal)", src->path,
	       dpath);
}

/* Upload under the destination id, then delete the source. The intent (with the bytes of
 * an image at the destination, which is deleted first) is journaled before anything is
 * deleted; see journal_settle.c for how each failure point settles. */
static int rename_remote(struct fs_ctx *fs, struct rn_side *src, struct rn_side *dst,
			 const char *nname, struct api_image *img)
{
	int sfd, dfd = -1;
	uint64_t size, seq;
	char dpath[1100];
	struct fs_wstate *sw = NULL;
	snprintf(dpath, sizeof(dpath), "images/%s", dst->id);
	int rc = src->scratch ? fs_up_scratch_src_fd(fs, src->n, &sw, &sfd)
			      : fs_blob_fd(fs, src->id, src->version, src->path, &sfd, &size);
	if (rc < 0)
		return rc;
	if (dst->n && !dst->pending &&
	    (rc = fs_blob_fd(fs, dst->id, dst->version, dpath, &dfd, &size)) < 0) {
		if (rc != -ENOENT) {
			if (sw)
				fs_up_scratch_src_done(fs, sw, 0);
			close(sfd);
			return rc;
		}
		rc = 0; /* gone elsewhere already: nothing to delete, a plain upload */
	}
	/* A scratch source onto a new name deletes nothing: no intent to record. */
	int journaled = !src->scratch || dfd >= 0;
	if (journaled)
		rc = fs_up_journal_replace(fs, dst->n, dst->id, src->scratch ? NULL : src->id,
					   src->version, dfd >= 0 ? &dst->a : NULL, dst->version, dfd,
					   &seq);
	if (dfd >= 0)
		close(dfd);
	if (rc < 0) {
		if (sw)
			fs_up_scratch_src_done(fs, sw, 0);
		close(sfd);
		return rc;
	}
	int deleted = 0;
	if (dfd >= 0)
		deleted = (rc = fs_up_delete_id(fs, dst->id, dpath)) == 0;
	if (rc == 0)
		rc = fs_up_upload_fd(fs, dst->id, sfd, NULL, &src->a, nname, dpath, img);
	int settled = 0; /* the journal found the upload stored: the entry is finished */
	if (rc < 0 && journaled)
		settled = (rc = fs_up_settle_failed(fs, dst->n, seq, dst->id, dst->version, deleted,
						    dpath, rc, img)) == 0;
	if (sw)
		fs_up_scratch_src_done(fs, sw, rc == 0);
	if (rc == 0) {
		cache_remove(fs->cache, dst->id);
		fs_cache_put_fd(fs, dst->id, img->uploaded_ms, sfd);
		if (settled && !src->scratch) /* the journal deleted the source */
			cache_remove(fs->cache, src->id);
		else if (!src->scratch)
			rename_delete_src(fs, src, dpath, seq);
		else if (journaled)
			journal_finish(fs->journal, seq);
	}
	close(sfd);
	return rc;
}

int fs_img_rename(struct fs_ctx *fs, struct fs_node *odir, const char *oname, struct fs_node *ndir,
		  const char *nname, unsigned int flags)
{
	struct rn_side src, dst;
	struct api_image img;
	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	memset(&img, 0, sizeof(img));

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT */
	if (strlen(nname) > 255)
		return -ENAMETOOLONG;
	int rc = fs_wb_wait_child(fs, odir, oname); /* ordered after pending uploads */
	if (rc == 0)
		rc = fs_wb_wait_child(fs, ndir, nname);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	rc = rename_prepare_locked(fs, odir, oname, ndir, nname, flags, &src, &dst);
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0 && (!fs_name_valid(nname) ||
			(!fs_is_scratch_name(nname) && api_custom_id_valid(dst.id) < 0))) {
		fs_log(FS_LOG_ERR, "cannot rename '%s' to 'images/%s': not a valid image id",
		       src.path, dst.id);
		rc = -EINVAL;
	}
	if (rc == 0 && fs->journal) /* ordered after unfinished entries of either id */
		journal_wait_id(fs->journal, dst.id, FS_JOURNAL_ORDER_MS);
	/* A scratch file stays local under another '.' name (unless that is an uploaded image);
	 * under any other name it is uploaded once, by the replace rules onto an image. */
	int upload =
	    rc == 0 && (!src.pending ||
			(src.scratch && (!fs_is_scratch_name(nname) || (dst.n && !dst.pending))));
	if (upload)
		rc = rename_remote(fs, &src, &dst, nname, &img);
	else if (rc == 0 && dst.n && !dst.pending) {
		char dpath[1100];
		snprintf(dpath, sizeof(dpath), "images/%s", dst.id);
		rc = fs_up_delete_id(fs, dst.id, dpath);
		if (rc == 0)
			cache_remove(fs->cache, dst.id);
	}
	if (rc == 0)
		rc = rename_commit(fs, &src, &dst, ndir, nname, upload ? &img : NULL);
	api_image_release(&img);
	rn_side_release(&src);
	rn_side_release(&dst);
	return rc > 0 ? 0 : rc;
}

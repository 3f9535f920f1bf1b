/*
 * fs_times.c - mtimes of images: utimensat, and storing a mtime set here with the image.
 *
 * The API keeps nothing but `uploaded` for an image, so the file's mtime (utimensat) and the
 * size of its bytes travel in one reserved key of its metadata object (the stamp,
 * fs_stamp.c). Every upload made here carries the stamp: the size of the bytes and, when one
 * was set, the mtime; a utimensat on a stored image is one PATCH of the metadata with the
 * new stamp. A listing then gives every host the exact size and mtime with no extra request.
 *
 * Local first: while a file is local (created here and not uploaded, a scratch file) or
 * being written, a utimensat only changes the node (FS_NF_TIMES) and the upload takes it
 * along: `cp -p`, `rsync -t` and `tar x` cost no request for their timestamps. A mtime that
 * cannot be stored (stamp=off; metadata set elsewhere that leaves no room) stays in the
 * node for the life of the mount (FS_NF_TIMES is never cleared).
 */
#include "fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NS 1000000000LL

/* One PATCH of n's metadata with the stamp (mtime ns, size if known). */
static int times_store(struct fs_ctx *fs, struct fs_node *n, int64_t ns)
{
	struct api_image_patch p = {.require_signed_urls = -1};
	struct api_image img;
	struct api_err err;
	char *meta = NULL;
	int stamped = 0;

	pthread_mutex_lock(&fs->lock);
	char *id = fs_node_id_locked(fs, n);
	char *path = fs_node_path_locked(fs, n);
	char *user = n->u.img && n->u.img->meta ? strdup(n->u.img->meta) : NULL;
	int64_t size = n->flags & FS_NF_SIZE ? (int64_t)n->size : -1;
	int nomem = !id || !path || (n->u.img && n->u.img->meta && !user);
	pthread_mutex_unlock(&fs->lock);
	int rc = nomem ? -ENOMEM : fs_stamp_meta(fs, user, 1, ns, size, path, &meta, &stamped);
	if (rc == 0 && stamped) {
		p.metadata_json = meta;
		rc = api_image_edit(fs->api, id, &p, &img, &err);
		if (rc < 0)
			fs_log_api("set the mtime of", path, rc, &err);
	}
	pthread_mutex_lock(&fs->lock);
	if (rc == 0 && (n->flags & FS_NF_LINKED)) {
		if (stamped)
			fs_img_set_locked(fs, n, &img);
		n->mtime_ns = ns;
		n->flags |= FS_NF_MTIME;
		if (stamped)
			n->flags &= ~FS_NF_TIMES;
		else
			n->flags |= FS_NF_TIMES;
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0 && stamped)
		api_image_release(&img);
	free(meta);
	free(user);
	free(id);
	free(path);
	return rc;
}

int fs_img_set_mtime(struct fs_ctx *fs, struct fs_node *n, const struct timespec *mtime)
{
	if (!mtime)
		return 0; /* atime only: not kept */
	int64_t ns = (int64_t)mtime->tv_sec * NS + mtime->tv_nsec;
	pthread_mutex_lock(&fs->lock);
	int local = (n->flags & FS_NF_PENDING) || (n->u.img && n->u.img->w) || fs->cfg.stamp_off;
	int same = (n->flags & FS_NF_MTIME) && n->mtime_ns == ns;
	if (local) {
		n->mtime_ns = ns;
		n->flags |= FS_NF_MTIME | FS_NF_TIMES;
	}
	int record = fs->cfg.stamp_off && !(n->flags & FS_NF_PENDING);
	char *id = record ? fs_node_id_locked(fs, n) : NULL;
	int64_t version = n->uploaded_ms;
	pthread_mutex_unlock(&fs->lock);
	if (id) /* stamp=off: the mtime is kept in the cache dir (fs_local.c) */
		fs_local_put(fs, id, version, -1, 1, ns);
	free(id);
	if (local || same)
		return 0;
	return times_store(fs, n, ns);
}

void fs_times_flush(struct fs_ctx *fs, struct fs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	/* a journaled write-back upload (FS_NF_WB) carries the mtime in its stamp */
	int todo = (n->flags & FS_NF_TIMES) && (n->flags & FS_NF_LINKED) &&
		   !(n->flags & (FS_NF_PENDING | FS_NF_WB)) && !fs->cfg.stamp_off;
	int64_t ns = n->mtime_ns;
	pthread_mutex_unlock(&fs->lock);
	if (todo)
		times_store(fs, n, ns);
}

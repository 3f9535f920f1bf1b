/*
 * fs_writeback.c - images/ with -o writeback: close() returns once the bytes are staged
 * and journaled; the journal's workers upload them (journal/journal_settle.c).
 *
 * A file written with write-back becomes one JOURNAL_UPLOAD entry at flush: its bytes and
 * the intent are one record of the journal's log, fdatasync'd before flush returns (the
 * bytes of an image it replaces are pinned and fsync'd first); the staged file itself
 * becomes the working copy the uploads read (journal_log.c), so a later write through the
 * same handle restages first. A new file's flush makes no request (a replace first needs
 * the old image's bytes: from the cache, or downloaded). The node is marked FS_NF_WB
 * until the upload is stored. Meanwhile:
 *  - reads get the pinned bytes (fs_blob_fd asks the journal first), listings keep the
 *    local state (size, attributes) instead of the server's;
 *  - every later operation on the path that would change the account (open for writing,
 *    rename either side, unlink, setxattr, removexattr) waits for the upload first, so the
 *    account sees them in the order the user made them; fsync waits and returns the
 *    upload's error;
 *  - a refused upload (the API rejects the bytes) drops the file from the mount (a replace
 *    shows the old image again) and its bytes go to <cache_dir>/lost+found; `imagesfs
 *    sync` names it.
 * The waits end with -ETIMEDOUT (the upload continues) when an attempt at the upload
 * fails meanwhile (the server refuses or is down: the operation fails within about one
 * retry budget, as it would without write-back), or after FS_WB_WAIT_MS (a long queue).
 */
#include "fs.h"
#include "journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_WB_WAIT_MS (10 * 60 * 1000)

/* The node of image id, or NULL. */
static struct fs_node *node_by_id_locked(struct fs_ctx *fs, const char *id)
{
	struct fs_node *n = fs->fixed[FS_INO_IMAGES];
	char comp[256];
	const char *p = id;
	while (n) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);
		if (l == 0 || l >= sizeof(comp))
			return NULL;
		memcpy(comp, p, l);
		comp[l] = 0;
		n = fs_node_child_locked(fs, n, comp);
		if (!slash)
			break;
		p = slash + 1;
	}
	return n && n->kind == FS_K_IMG ? n : NULL;
}

void fs_wb_on_upload(void *arg, const char *id, const struct api_image *img, int fd)
{
	struct fs_ctx *fs = arg;
	struct stat st;
	uint64_t size = fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = node_by_id_locked(fs, id);
	if (n && (n->flags & FS_NF_WB)) {
		n->flags &= ~(uint32_t)FS_NF_WB;
		if (img) {
			fs_img_set_locked(fs, n, img);
			n->size = size;
			n->flags |= FS_NF_SIZE;
			n->gen = fs->images.gen;
		} else if (!(n->u.img && n->u.img->w)) {
			fs_node_drop_locked(fs,
					    n); /* refused: the next lookup shows what is stored */
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (img && fd >= 0) {
		int cfd;
		uint64_t csize;
		if (cache_lookup(fs->cache, id, img->uploaded_ms, &cfd, &csize) == 0)
			close(cfd);
		else
			fs_cache_put_fd(fs, id, img->uploaded_ms, fd);
	}
	if (img)
		fs_log(FS_LOG_DEBUG, "uploaded 'images/%s' (%llu bytes, write-back)", id,
		       (unsigned long long)size);
}

void fs_journal_on_restored(void *arg, const struct api_image *img)
{
	struct fs_ctx *fs = arg;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = node_by_id_locked(fs, img->id);
	if (!n || !(n->flags & (FS_NF_PENDING | FS_NF_WB)))
		n = fs_images_apply_locked(fs, img); /* the name shows again, with its attributes */
	if (n && n->parent) /* the kernel may hold a negative entry from while it was gone */
		fs_inval_queue_locked(fs, n->parent->ino, n->name);
	fs->failed_lookup.ms = 0;
	pthread_mutex_unlock(&fs->lock);
}

/* Called with fs->lock held, returns with it released: waits for the journal entries of
 * n's id when n has a write-back upload pending. 0, or journal_wait_stored's -errno: an
 * attempt at the upload that fails meanwhile fails the operation (-ETIMEDOUT) instead of
 * holding it (unkillable: a FUSE request in flight) while the server refuses. */
static int wb_wait_unlock(struct fs_ctx *fs, struct fs_node *n)
{
	int wb = fs->journal && n && n->kind == FS_K_IMG && (n->flags & FS_NF_WB);
	char *id = wb ? fs_node_id_locked(fs, n) : NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!wb)
		return 0;
	if (!id)
		return -ENOMEM;
	int rc = journal_wait_stored(fs->journal, id, FS_WB_WAIT_MS);
	free(id);
	return rc;
}

int fs_wb_wait_node(struct fs_ctx *fs, struct fs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	return wb_wait_unlock(fs, n);
}

int fs_wb_wait_child(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	int rc = wb_wait_unlock(fs, fs_node_child_locked(fs, dir, name));
	return rc == -EIO ? 0 : rc; /* refused: the operation sees what is stored */
}

int fs_wb_wait_ino(struct fs_ctx *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	return wb_wait_unlock(fs, fs_node_get_locked(fs, ino));
}

/* The metadata objects of an upload entry, each with its own stamp (fs_times.c): *new_meta
 * for the staged bytes (a's mtime, their size), *old_meta for the image they replace, should
 * the journal put it back (its size; its mtime when the node still holds the stored one).
 * An empty old object is NULL, and so is the new one then (journal.h: NULL = meta). 0 or
 * -errno. */
static int stage_metas(struct fs_ctx *fs, const struct fs_attrs *a, int old_mtime, int64_t old_size,
		       uint64_t size, const char *path, char **new_meta, char **old_meta)
{
	*new_meta = *old_meta = NULL;
	int rc = fs_stamp_meta(fs, a->meta, a->has_mtime, a->mtime_ns, (int64_t)size, path,
			       new_meta, NULL);
	if (rc == 0)
		rc = fs_stamp_meta(fs, a->meta, old_mtime, a->mtime_ns, old_size, path, old_meta,
				   NULL);
	if (rc == 0 && !strcmp(*old_meta, "{}")) {
		free(*old_meta);
		*old_meta = NULL;
		if (!strcmp(*new_meta, "{}")) {
			free(*new_meta);
			*new_meta = NULL;
		}
	}
	if (rc < 0) {
		free(*new_meta);
		*new_meta = NULL;
	}
	return rc;
}

/* Journals the staged bytes (fd, the file *staged) of n for upload: the write-back flush. */
int fs_wb_stage(struct fs_ctx *fs, struct fs_node *n, int fd, uint64_t size, char **staged)
{
	struct fs_attrs a;
	char *new_meta = NULL, *old_meta = NULL;
	uint64_t old_size = 0;
	int rc = fs_wb_wait_node(fs, n); /* an earlier upload of this path goes first */
	if (rc < 0 && rc != -EIO)
		return rc;
	pthread_mutex_lock(&fs->lock);
	int pending = (n->flags & FS_NF_PENDING) != 0;
	int64_t version = n->uploaded_ms;
	char *id = fs_node_id_locked(fs, n);
	char *path = fs_node_path_locked(fs, n);
	/* the node's mtime is the old image's unless set here and not stored yet */
	int old_mtime = (n->flags & FS_NF_MTIME) && !(n->flags & FS_NF_TIMES);
	rc = fs_attrs_copy_locked(n, &a);
	pthread_mutex_unlock(&fs->lock);
	int old_fd = -1;
	if (rc < 0 || !id || !path)
		rc = -ENOMEM;
	else if (!pending &&
		 (rc = fs_blob_fd(fs, id, version, path, &old_fd, &old_size)) == -ENOENT)
		rc = 0, old_fd = -1; /* gone elsewhere: a plain upload */
	if (rc == 0)
		rc = stage_metas(fs, &a, old_mtime, old_fd >= 0 ? (int64_t)old_size : -1, size,
				 path, &new_meta, &old_meta);
	if (rc == 0) {
		free(a.filename);
		a.filename = strdup(n->name);
		struct journal_intent in = {.op = JOURNAL_UPLOAD,
					    .id = id,
					    .old_version = old_fd >= 0 ? version : 0,
					    .old_fd = old_fd,
					    .new_fd = fd,
					    .new_path = staged,
					    .meta = old_meta,
					    .new_meta = new_meta,
					    .creator = a.creator,
					    .filename = a.filename,
					    .rsu = a.rsu};
		uint64_t seq;
		/* Marked before journal_begin: a worker may store the entry, and call
		 * fs_wb_on_upload (which acts only on FS_NF_WB nodes), before it returns. */
		pthread_mutex_lock(&fs->lock);
		uint32_t had = n->flags & (FS_NF_WB | FS_NF_SIZE);
		uint32_t had_size = n->size;
		n->flags |= FS_NF_WB | FS_NF_SIZE;
		n->size = (uint32_t)size;
		pthread_mutex_unlock(&fs->lock);
		rc = journal_begin(fs->journal, &in, &seq);
		if (rc < 0) {
			pthread_mutex_lock(&fs->lock);
			n->flags = (n->flags & ~(uint32_t)(FS_NF_WB | FS_NF_SIZE)) | had;
			n->size = had_size;
			pthread_mutex_unlock(&fs->lock);
			rc = rc == -ENOSPC || rc == -EDQUOT || rc == -ENOMEM ? rc : -EIO;
		}
	}
	if (old_fd >= 0)
		close(old_fd);
	if (rc == 0)
		fs_log(FS_LOG_DEBUG, "staged '%s' (%llu bytes) for upload", path,
		       (unsigned long long)size);
	fs_attrs_release(&a);
	free(new_meta);
	free(old_meta);
	free(id);
	free(path);
	return rc;
}

void fs_wb_drain(struct fs_ctx *fs)
{
	if (!fs->journal || journal_pending(fs->journal) == 0)
		return;
	size_t n = journal_pending(fs->journal);
	fs_log(FS_LOG_INFO, "unmounting: waiting up to %d s for %zu pending journal entries",
	       FS_WB_DRAIN_MS / 1000, n);
	char *failed = NULL;
	int rc = journal_wait(fs->journal, FS_WB_DRAIN_MS, &failed);
	if (rc == -ETIMEDOUT)
		fs_log(FS_LOG_WARN,
		       "unmounting with %zu journal entries pending: the next mount finishes them",
		       journal_pending(fs->journal));
	else if (rc == 0)
		fs_log(FS_LOG_INFO, "all pending uploads stored");
	free(failed);
}

/*
 * fs_upload.h - the steps of fs_upload.c that fs_rename.c shares: an upload under an id,
 * a delete, the journaled intent of a replace and its settling when it fails, and the bytes
 * of a scratch file as an upload source. Private to fs/ (fs.h is the module's interface).
 */
#ifndef IMAGESFS_FS_UPLOAD_H
#define IMAGESFS_FS_UPLOAD_H

#include "fs.h"

#include <stdint.h>

/* The image id of the child `name` of dir (malloc'd, NULL on ENOMEM); fs->lock held. */
char *fs_up_child_id_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name);

/* Uploads the bytes of fd (or, with url, the image the API fetches) under id with the
 * attributes a and the stamp; fills out. 0 or -errno (logged). */
int fs_up_upload_fd(struct fs_ctx *fs, const char *id, int fd, const char *url,
		    const struct fs_attrs *a, const char *filename, const char *path,
		    struct api_image *out);

/* Deletes id; an id already gone counts as deleted. 0 or -errno (logged). */
int fs_up_delete_id(struct fs_ctx *fs, const char *id, const char *path);

/* Records (fsync'd, bytes pinned) the intent to replace the image at id, whose node is on,
 * attributes old, version old_version and bytes old_fd (-1: none); src_id != NULL for a
 * rename from src_id (version src_version). *seq names the entry. 0 or -errno. */
int fs_up_journal_replace(struct fs_ctx *fs, struct fs_node *on, const char *id,
			  const char *src_id, int64_t src_version, const struct fs_attrs *old,
			  int64_t old_version, int old_fd, uint64_t *seq);

/* Settles entry seq after the upload under id failed with rc (deleted: the DELETE of id
 * succeeded): puts the old image back now, or leaves the entry to the journal's background
 * retries, and returns rc; or, when settling finds the upload stored after all (a lost reply
 * that could not be read back; a rename's source is then deleted and the entry finished),
 * returns 0 with *out the stored image (released by the caller). */
int fs_up_settle_failed(struct fs_ctx *fs, struct fs_node *n, uint64_t seq, const char *id,
			int64_t old_version, int deleted, const char *path, int rc,
			struct api_image *out);

/* An fd on the staged bytes of scratch file n, held unchanged until fs_up_scratch_src_done
 * (ok: they were uploaded). 0 or -errno. */
int fs_up_scratch_src_fd(struct fs_ctx *fs, struct fs_node *n, struct fs_wstate **wp, int *fd);
void fs_up_scratch_src_done(struct fs_ctx *fs, struct fs_wstate *w, int ok);

#endif

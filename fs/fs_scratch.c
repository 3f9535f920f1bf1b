/*
 * fs_scratch.c - local scratch files: new names beginning with '.' inside images/.
 *
 * Tools write to a dot-name and rename it into place (rsync's ".NAME.XXXXXX", editors' swap
 * files), or leave dot-files behind (.DS_Store, ._*). Uploading them would cost an upload and
 * a delete each and fail on anything that is not an image. So a new '.' name is a scratch
 * file: its bytes stay in the staging file of the write path (fs_upload.c; the node holds a
 * reference so they outlive the handles), and create, write, read, truncate, timestamps,
 * xattrs and unlink are local. A rename to a visible name uploads it once, with its mtime and
 * xattrs (fs_img_rename), and returns that upload's error with the scratch file left in
 * place. Scratch files still there at unmount are dropped, one log line each.
 *
 * Only names made here are scratch files: images whose id begins with '.' that the listing
 * brings are ordinary images (listed, readable, replaceable).
 */
#include "fs.h"

#include <stdlib.h>
#include <string.h>

int fs_node_is_scratch_locked(const struct fs_node *n)
{
	return n->kind == FS_K_IMG && (n->flags & FS_NF_SCRATCH) != 0;
}

void fs_scratch_drop_all(struct fs_ctx *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t b = 0; b < fs->ino_buckets; b++) {
		for (struct fs_node *n = fs->ino_tab[b]; n; n = n->ino_next) {
			if (!fs_node_is_scratch_locked(n) || !(n->flags & FS_NF_LINKED))
				continue;
			char *path = fs_node_path_locked(fs, n);
			fs_log(FS_LOG_INFO, "dropped scratch file '%s' at unmount (never uploaded)",
			       path ? path : "?");
			free(path);
			struct fs_wstate *w = fs_scratch_detach_locked(n);
			n->flags &= ~FS_NF_SCRATCH;
			if (w)
				fs_wstate_free(w); /* closes and unlinks; takes no lock */
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

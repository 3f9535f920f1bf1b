/*
 * fs_url.c - user.url: upload an image from a URL the API fetches.
 *
 * `setfattr -n user.url -v URL images/NAME` uploads under the id NAME the image the API
 * fetches from URL (the `url` field of the multipart upload), so the bytes never pass
 * through this machine. On a file not uploaded yet (`touch images/NAME` makes one) it goes up
 * with the attributes already set on the file; on an uploaded image it replaces it through
 * the one replace path of fs_upload.c (old bytes kept locally until the new image is stored,
 * uploaded again when the new upload fails). setxattr returns when the upload is done and
 * returns its errno: the API's refusal of a URL it cannot fetch (400/5400) or of bytes that
 * are not an image (415/5455) is EINVAL, with the API's message in the log.
 *
 * The attribute is write-only: it names an action, not a property the API stores, so
 * getxattr answers ENODATA and listxattr leaves it out (fs_xattr.c never knows the name).
 * XATTR_CREATE / XATTR_REPLACE are ignored for the same reason.
 */
#include "fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Why value is not a URL the API may fetch, or NULL when it is one. */
static const char *url_refusal(const char *value, size_t size)
{
	size_t skip;
	if (size == 0)
		return "the URL is empty";
	if (size >= 7 && strncasecmp(value, "http://", 7) == 0)
		skip = 7;
	else if (size >= 8 && strncasecmp(value, "https://", 8) == 0)
		skip = 8;
	else
		return "only http:// and https:// URLs are accepted";
	if (size == skip || strchr("/?#", value[skip]))
		return "the URL has no host";
	for (size_t i = 0; i < size; i++)
		if ((unsigned char)value[i] <= 0x20 || (unsigned char)value[i] == 0x7f)
			return "the URL holds a space, a control character or a NUL";
	return NULL;
}

/* Checks value and uploads from it; 0 or -errno, one log line on every failure. */
static int url_set(struct fs_ctx *fs, fuse_ino_t ino, struct fs_node *n, const char *path,
		   const char *value, size_t size)
{
	if (size && value[size - 1] == '\n') /* a line read from a file, as xa_validate allows */
		size--;
	int rc = 0;
	const char *why = size > FS_MAX_URL_BYTES ? "the URL is longer than 4096 bytes"
						  : url_refusal(value, size);
	char *url = why ? NULL : strndup(value, size);
	if (why) {
		fs_log(FS_LOG_ERR, "cannot upload '%s' from a URL: %s", path, why);
		rc = size > FS_MAX_URL_BYTES ? -E2BIG : -EINVAL;
	} else if (!url) {
		rc = -ENOMEM;
	} else if ((rc = fs_img_upload_url(fs, n, url)) == -EBUSY) {
		fs_log(FS_LOG_ERR, "cannot upload '%s' from a URL: it is being written", path);
	} else if (rc == 0 && fs->se) {
		/* new size and time: the kernel's cached attributes are stale. Attribute
		 * invalidation takes no inode lock, so it is safe inside setxattr. */
		atomic_fetch_add_explicit(&fs->ops.inval_attr, 1, memory_order_relaxed);
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
	}
	free(url);
	return rc;
}

void fs_url_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *value, size_t size)
{
	struct fs_ctx *fs = fuse_req_userdata(req);
	char *path = NULL;
	int rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_get_locked(fs, ino);
	if (n && n->kind == FS_K_IMG)
		path = fs_node_path_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (!n || n->kind != FS_K_IMG)
		rc = -EOPNOTSUPP; /* like every unknown name outside images */
	else if (fs->cfg.ro)
		rc = -EROFS;
	else if (!path)
		rc = -ENOMEM;
	else
		rc = url_set(fs, ino, n, path, value, size);
	free(path);
	fuse_reply_err(req, -rc);
}

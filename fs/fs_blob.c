/*
 * fs_blob.c - the bytes and attributes an image's write paths work from: its blob read
 * through the cache (or, while a write-back upload of it is pending, the journal's copy),
 * bytes put into the cache under a version, fd-to-fd copies, and the snapshot of a node's
 * attributes an upload carries. Below fs_images.c, fs_upload.c and fs_writeback.c, which
 * all use it.
 */
#include "fs.h"
#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct blob_fill {
	struct fs_ctx *fs;
	const char *id;
	struct api_err err;
	int called;
};

static int blob_fill_fn(int fd, void *arg)
{
	struct blob_fill *bf = arg;
	uint64_t got = 0;
	bf->called = 1;
	return api_image_blob(bf->fs->api, bf->id, fd, 0, &got, NULL, 0, &bf->err);
}

int fs_blob_fd(struct fs_ctx *fs, const char *id, int64_t version, const char *path, int *fd,
	       uint64_t *size)
{
	struct blob_fill bf = {.fs = fs, .id = id};
	if (fs->journal && journal_upload_fd(fs->journal, id, fd, size) == 0)
		return 0; /* a write-back upload not stored yet: its bytes */
	int rc = cache_get(fs->cache, id, version, blob_fill_fn, &bf, fd, size);
	if (rc < 0) {
		if (bf.called)
			fs_log_api("read", path, rc, &bf.err);
		else
			fs_log(FS_LOG_ERR, "cannot read '%s': cache: %s", path, strerror(-rc));
	}
	return rc;
}

void fs_attrs_release(struct fs_attrs *a)
{
	free(a->meta);
	free(a->creator);
	free(a->filename);
	memset(a, 0, sizeof(*a));
}

int fs_attrs_copy_locked(const struct fs_node *n, struct fs_attrs *a)
{
	const struct fs_img_extra *x = n->u.img;
	memset(a, 0, sizeof(*a));
	a->rsu = (n->flags & FS_NF_RSU) != 0;
	a->has_mtime = (n->flags & FS_NF_MTIME) != 0;
	a->mtime_ns = n->mtime_ns;
	if (x && x->meta && !(a->meta = strdup(x->meta)))
		goto nomem;
	if (x && x->creator && !(a->creator = strdup(x->creator)))
		goto nomem;
	int err;
	if (!(a->filename = fs_img_filename_locked(n, &err)) && err == -ENOMEM)
		goto nomem;
	if (!a->filename && !(a->filename = strdup(n->name)))
		goto nomem;
	return 0;
nomem:
	fs_attrs_release(a);
	return -ENOMEM;
}

/* Copies src (from offset 0) to dst; 0 or -errno. */
int fs_copy_fd(int src, int dst)
{
	enum { CHUNK = 64 * 1024 };
	char *buf = malloc(CHUNK);
	off_t off = 0;
	int rc = 0;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t r = pread(src, buf, CHUNK, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : 0;
			break;
		}
		if (pwrite(dst, buf, (size_t)r, off) != r) {
			rc = -EIO;
			break;
		}
		off += r;
	}
	free(buf);
	return rc;
}

static int copy_fill_fn(int fd, void *arg)
{
	return fs_copy_fd(*(int *)arg, fd);
}

void fs_cache_put_fd(struct fs_ctx *fs, const char *id, int64_t version, int src)
{
	int fd;
	uint64_t size;
	if (cache_get(fs->cache, id, version, copy_fill_fn, &src, &fd, &size) == 0)
		close(fd);
}

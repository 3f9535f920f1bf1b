/*
 * fs_xattr.c - extended attributes of images.
 *
 *   user.metadata          rw  the image's metadata, a JSON object (<= 1024 bytes compact)
 *   user.creator           rw  the creator string (<= 1024 bytes)
 *   user.requireSignedURLs rw  "true" / "false"
 *   user.filename          ro  the uploaded filename
 *   user.uploaded          ro  upload time, RFC 3339 UTC with milliseconds
 *   user.variants          ro  delivery URLs, one per line
 *   user.url               wo  upload from a URL (fs_url.c; never read or listed here)
 *   user.state             ro  stored | local | pending | uploading |
 *                              failed: <ERRNO>: <API message> (last failed upload)
 *
 * Reads and lists are answered from the table (no network, unless the listing is older
 * than dir_ttl: then the image is re-checked first, fs_img_recheck). A set on an uploaded image is
 * one PATCH; on a file not uploaded yet it is stored and sent with the upload. Every name
 * outside user.* (security.*, system.posix_acl_*, trusted.*) is refused at once with
 * EOPNOTSUPP, without network: that is the answer after which `ls -l` (coreutils) stops
 * asking this file system for SELinux labels and ACLs, so a listing costs no getxattr round
 * trips per file. Unknown user.* names are ENODATA (get) or ENOTSUP (set).
 */
#include "fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#include "api_doc.h"
#include "api_stamp.h"

enum xa { XA_META, XA_CREATOR, XA_RSU, XA_FILENAME, XA_UPLOADED, XA_VARIANTS, XA_STATE, XA_N };

static const char *const xa_names[XA_N] = {
    "user.metadata", "user.creator",  "user.requireSignedURLs",
    "user.filename", "user.uploaded", "user.variants", "user.state",
};

static int xa_find(const char *name)
{
	for (int i = 0; i < XA_N; i++)
		if (strcmp(name, xa_names[i]) == 0)
			return i;
	return -1;
}

/* Only user.* names exist here; anything else is "not supported", not "absent". */
static int xa_namespace_ok(const char *name)
{
	return strncmp(name, "user.", 5) == 0;
}

static int xa_readonly(int x)
{
	return x == XA_FILENAME || x == XA_UPLOADED || x == XA_VARIANTS || x == XA_STATE;
}

void fs_fmt_rfc3339(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];
	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

/* Value of attribute x for n (malloc'd), or NULL with *err set (-ENODATA / -ENOMEM). */
static char *xa_value_locked(struct fs_ctx *fs, struct fs_node *n, int x, int *err)
{
	const struct fs_img_extra *e = n->u.img;
	int pending = (n->flags & FS_NF_PENDING) != 0;
	char *v = NULL;
	*err = -ENODATA;
	switch (x) {
	case XA_META:
		if (e && e->meta)
			v = strdup(e->meta);
		else
			return NULL;
		break;
	case XA_CREATOR:
		if (e && e->creator)
			v = strdup(e->creator);
		else
			return NULL;
		break;
	case XA_RSU:
		v = strdup(n->flags & FS_NF_RSU ? "true" : "false");
		break;
	case XA_FILENAME:
		if (pending)
			return NULL;
		return fs_img_filename_locked(n, err);
	case XA_UPLOADED:
		if (pending)
			return NULL;
		v = malloc(40);
		if (v)
			fs_fmt_rfc3339(n->uploaded_ms, v, 40);
		break;
	case XA_VARIANTS:
		if (pending)
			return NULL;
		v = fs_img_variants_locked(fs, n);
		break;
	case XA_STATE:
		v = fs_img_state_locked(fs, n);
		break;
	default:
		return NULL;
	}
	if (!v)
		*err = -ENOMEM;
	return v;
}

char *fs_ops_stats_text(struct fs_ctx *fs)
{
	struct fs_opstats *o = &fs->ops;
	char *s = malloc(512);
	if (s)
		snprintf(s, 512,
			 "lookup %llu\ngetattr %llu\nreaddir %llu\nreaddirplus %llu\n"
			 "getxattr %llu\nopen %llu\ninval_attr %llu\n",
			 atomic_load(&o->lookup), atomic_load(&o->getattr),
			 atomic_load(&o->readdir), atomic_load(&o->readdirplus),
			 atomic_load(&o->getxattr), atomic_load(&o->open),
			 atomic_load(&o->inval_attr));
	return s;
}

/*
 * The parts of user.state. `local`: a file made here and never uploaded (an empty file from
 * touch, an open O_CREAT that wrote nothing, a scratch file). `pending`: journaled for a
 * write-back upload, not stored yet (fs_writeback.c).
 */
static int state_local_locked(const struct fs_node *n)
{
	return (n->flags & FS_NF_PENDING) && !(n->flags & FS_NF_WB);
}

static int state_pending_locked(struct fs_ctx *fs, const struct fs_node *n)
{
	(void)fs;
	return (n->flags & FS_NF_WB) != 0; /* journaled, not stored yet (fs_writeback.c) */
}

char *fs_img_state_locked(struct fs_ctx *fs, const struct fs_node *n)
{
	const struct fs_img_extra *x = n->u.img;
	if (n->flags & FS_NF_UPLOADING)
		return strdup("uploading");
	if (state_pending_locked(fs, n))
		return strdup("pending");
	if (x && x->fail) {
		size_t len = strlen(x->fail) + sizeof("failed: ");
		char *v = malloc(len);
		if (v)
			snprintf(v, len, "failed: %s", x->fail);
		return v;
	}
	return strdup(state_local_locked(n) ? "local" : "stored");
}

/* The errno a set/remove of an attribute replies with. The kernel (seen on Linux 6.18)
 * turns EAGAIN from a FUSE setxattr into EOPNOTSUPP before the caller sees it, and cp -a
 * and mv read EOPNOTSUPP as "this file system has no xattrs" and drop the metadata without
 * a word. A server that refused or throttled us past the retry budget is therefore EIO:
 * it reaches the caller as itself and every tool reports it. (ENOSYS must never be
 * replied either: the kernel would then refuse every later setxattr of the mount.) */
static int xa_reply_errno(int rc)
{
	return rc == -EAGAIN || rc == -ENOSYS ? EIO : -rc;
}

static struct fs_node *img_node_locked(struct fs_ctx *fs, fuse_ino_t ino)
{
	struct fs_node *n = fs_node_get_locked(fs, ino);
	return n && n->kind == FS_K_IMG ? n : NULL;
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_ctx *fs = fuse_req_userdata(req);
	int x = xa_find(name), err = -ENODATA;
	char *v = NULL;
	atomic_fetch_add_explicit(&fs->ops.getxattr, 1, memory_order_relaxed);
	if (!xa_namespace_ok(name)) {
		err = -EOPNOTSUPP;
	} else if (ino == FS_INO_ROOT && strcmp(name, FS_XATTR_OPS) == 0) {
		v = fs_ops_stats_text(fs);
		err = -ENOMEM;
	} else if (x >= 0) {
		char *path = NULL;
		int sign = 0;
		pthread_mutex_lock(&fs->lock);
		struct fs_node *n = img_node_locked(fs, ino);
		pthread_mutex_unlock(&fs->lock);
		/* the kernel holds ino: n stays valid across the re-check */
		if (n && fs_img_recheck(fs, n) == -ENOENT)
			err = -ENOENT;
		else if (n) {
			pthread_mutex_lock(&fs->lock);
			v = xa_value_locked(fs, n, x, &err);
			if (v && x == XA_VARIANTS && (n->flags & FS_NF_RSU)) {
				sign = 1;
				path = fs_node_path_locked(fs, n);
			}
			pthread_mutex_unlock(&fs->lock);
		}
		/* a private image's URLs carry a token (network: keys/, variants/ listings) */
		if (sign && (err = path ? fs_variants_sign(fs, path, &v) : -ENOMEM) < 0) {
			free(v);
			v = NULL;
		}
		free(path);
	}
	if (!v) {
		fuse_reply_err(req, -err);
		return;
	}
	size_t len = strlen(v);
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, len);
	free(v);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_ctx *fs = fuse_req_userdata(req);
	char list[256];
	size_t len = 0;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = img_node_locked(fs, ino);
	for (int x = 0; n && x < XA_N; x++) {
		int err;
		char *v = xa_value_locked(fs, n, x, &err);
		if (!v)
			continue;
		free(v);
		size_t l = strlen(xa_names[x]) + 1;
		memcpy(list + len, xa_names[x], l);
		len += l;
	}
	pthread_mutex_unlock(&fs->lock);
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
}

/* The object (compact JSON) has the reserved top-level key of the stamp. */
static int xa_has_stamp_key(const char *obj)
{
	struct api_stamp st;
	char *user = NULL;
	int has = api_stamp_split(obj, &st, &user) == 0 && (!user || strcmp(user, obj) != 0) &&
		  strcmp(obj, "{}") != 0;
	free(user);
	return has;
}

/* Validates a value for a writable attribute; *norm receives what is stored/sent. */
static int xa_validate(struct fs_ctx *fs, int x, const char *value, size_t size, char **norm)
{
	*norm = NULL;
	if (x == XA_META) {
		/* the stamp (fs_times.c) shares the API's 1024 bytes */
		size_t cap = API_MAX_METADATA_BYTES - (fs->cfg.stamp_off ? 0 : API_STAMP_RESERVE);
		int rc = api_json_object_normalize(value, size, norm);
		if (rc < 0)
			return rc;
		if (strlen(*norm) > cap || xa_has_stamp_key(*norm)) {
			rc = strlen(*norm) > cap ? -E2BIG : -EINVAL; /* the key is reserved */
			free(*norm);
			*norm = NULL;
			return rc;
		}
		return 0;
	}
	if (x == XA_CREATOR) {
		if (size > API_MAX_CREATOR_LEN)
			return -E2BIG;
		if (memchr(value, '\0', size))
			return -EINVAL;
		*norm = strndup(value, size);
		return *norm ? 0 : -ENOMEM;
	}
	/* requireSignedURLs; a trailing newline (echo) is tolerated */
	if (size && value[size - 1] == '\n')
		size--;
	if (size == 4 && memcmp(value, "true", 4) == 0)
		*norm = strdup("true");
	else if (size == 5 && memcmp(value, "false", 5) == 0)
		*norm = strdup("false");
	else
		return -EINVAL;
	return *norm ? 0 : -ENOMEM;
}

static int xa_exists_locked(struct fs_node *n, int x)
{
	const struct fs_img_extra *e = n->u.img;
	if (x == XA_META)
		return e && e->meta;
	if (x == XA_CREATOR)
		return e && e->creator;
	return 1;
}

/* Stores a value on a node not uploaded yet (it goes with the upload). */
static int xa_store_locked(struct fs_node *n, int x, char *norm)
{
	struct fs_img_extra *e = fs_node_extra_locked(n);
	if (!e) {
		free(norm);
		return -ENOMEM;
	}
	if (x == XA_RSU) {
		n->flags &= ~FS_NF_RSU;
		if (norm && strcmp(norm, "true") == 0)
			n->flags |= FS_NF_RSU;
		free(norm);
	} else {
		char **slot = x == XA_META ? &e->meta : &e->creator;
		free(*slot);
		*slot = norm && *norm && strcmp(norm, "{}") ? norm : (free(norm), NULL);
	}
	fs_node_extra_trim_locked(n);
	return 0;
}

/* Applies x = norm (NULL = clear) to n: stored if pending, else one PATCH. Takes norm. */
static int xa_apply(struct fs_ctx *fs, fuse_ino_t ino, int x, char *norm, int flags)
{
	struct api_image_patch p = {.require_signed_urls = -1};
	struct api_image img;
	struct api_err err;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = img_node_locked(fs, ino);
	if (!n)
		rc = -ENOENT;
	else if ((flags & XATTR_CREATE) && xa_exists_locked(n, x))
		rc = -EEXIST;
	else if ((flags & XATTR_REPLACE) && !xa_exists_locked(n, x))
		rc = -ENODATA;
	else if (n->flags & FS_NF_PENDING) {
		rc = xa_store_locked(n, x, norm);
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	char *id = rc == 0 ? fs_node_id_locked(fs, n) : NULL;
	char *path = rc == 0 ? fs_node_path_locked(fs, n) : NULL;
	int has_mtime = rc == 0 && (n->flags & FS_NF_MTIME);
	int64_t mtime_ns = rc == 0 ? n->mtime_ns : 0;
	int64_t size = rc == 0 && (n->flags & FS_NF_SIZE) ? (int64_t)n->size : -1;
	pthread_mutex_unlock(&fs->lock);
	char *meta = NULL;
	if (rc == 0 && (!id || !path))
		rc = -ENOMEM;
	if (rc == 0 && x == XA_META) /* the stamp stays (fs_times.c) */
		rc = fs_stamp_meta(fs, norm, has_mtime, mtime_ns, size, path, &meta, NULL);
	if (rc < 0)
		goto out;
	if (x == XA_META)
		p.metadata_json = meta;
	else if (x == XA_CREATOR)
		p.creator = norm ? norm : "";
	else
		p.require_signed_urls = norm && strcmp(norm, "true") == 0;
	rc = api_image_edit(fs->api, id, &p, &img, &err);
	if (rc < 0) {
		fs_log_api("set attributes of", path, rc, &err);
		pthread_mutex_lock(&fs->lock);
		n = img_node_locked(fs, ino);
		if (n && n->u.img && n->u.img->w) /* being replaced: fail that too (fs.h) */
			n->u.img->xa_failed = 1;
		pthread_mutex_unlock(&fs->lock);
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	n = img_node_locked(fs, ino);
	if (n)
		fs_img_set_locked(fs, n, &img);
	pthread_mutex_unlock(&fs->lock);
	api_image_release(&img);
out:
	free(meta);
	free(id);
	free(path);
	free(norm);
	return rc;
}

/* Read-only attributes are computed by the API at upload: on a file not uploaded yet (being
 * created by cp -a or mv from another imagesfs mount) a set is accepted and ignored. */
static int ro_attr_on_new(struct fs_ctx *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = img_node_locked(fs, ino);
	int pending = n && (n->flags & FS_NF_PENDING);
	pthread_mutex_unlock(&fs->lock);
	return pending ? 0 : -EPERM;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags)
{
	struct fs_ctx *fs = fuse_req_userdata(req);
	int x = xa_find(name);
	char *norm = NULL;
	int rc;

	pthread_mutex_lock(&fs->lock);
	int is_img = img_node_locked(fs, ino) != NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!is_img || x < 0)
		rc = -EOPNOTSUPP; /* security.*, system.*, trusted.*, unknown user.* */
	else if (fs->cfg.ro)
		rc = -EROFS;
	else if (xa_readonly(x))
		rc = ro_attr_on_new(fs, ino);
	else if ((rc = xa_validate(fs, x, value, size, &norm)) == 0)
		rc = xa_apply(fs, ino, x, norm, flags);
	if (rc == -EINVAL || rc == -E2BIG)
		fs_log(FS_LOG_INFO, "refused %s on inode %llu: %s", name, (unsigned long long)ino,
		       rc == -E2BIG ? (x == XA_META && !fs->cfg.stamp_off
					   ? "value too large (limit 972 bytes: the mtime/size "
					     "stamp takes 52 of the API's 1024)"
					   : "value too large (limit 1024 bytes)")
				    : (x == XA_META ? "not a JSON object without the reserved key "
						      "'" API_STAMP_KEY "'"
						    : "invalid value"));
	fuse_reply_err(req, xa_reply_errno(rc));
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs_ctx *fs = fuse_req_userdata(req);
	int x = xa_find(name), rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = img_node_locked(fs, ino);
	int exists = n && x >= 0 && xa_exists_locked(n, x);
	pthread_mutex_unlock(&fs->lock);
	if (!xa_namespace_ok(name))
		rc = -EOPNOTSUPP;
	else if (!n || x < 0)
		rc = -ENODATA;
	else if (fs->cfg.ro)
		rc = -EROFS;
	else if (xa_readonly(x) || x == XA_RSU)
		rc = -EPERM; /* requireSignedURLs is always present: set it to "false" */
	else if (!exists)
		rc = -ENODATA;
	else
		rc = xa_apply(fs, ino, x, NULL, 0);
	fuse_reply_err(req, xa_reply_errno(rc));
}

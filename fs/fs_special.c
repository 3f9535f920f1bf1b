/*
 * fs_special.c - variants/, keys/, stats and statfs.
 *
 * These are small: an account has at most 100 variants and a handful of signing keys. Their
 * listings are kept like the images listing (trusted dir_ttl seconds) and the file contents
 * live in the node (variant documents, key values). Files here are opened with direct_io:
 * their content can change under the same inode (edits, regenerated keys).
 *
 * A variant document written by a user is buffered in memory (at most FS_MAX_DOC_BYTES) and
 * sent at close: parsed first (bad JSON -> EINVAL, nothing changes), then created or edited.
 */
#include "fs.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "api_doc.h"

static int alnum_name(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return 0;
	}
	return n > 0 && n <= max;
}

static void set_doc_locked(struct fs_node *n, char *doc)
{
	free(n->u.doc);
	n->u.doc = doc;
	n->size = doc ? strlen(doc) : 0;
	n->flags |= FS_NF_SIZE;
	n->flags &= ~FS_NF_PENDING;
}

/* Drops nodes of dir that the last listing (gen) did not see, except pending ones. */
static void sweep_dir_locked(struct fs_ctx *fs, struct fs_node *dir, uint32_t gen)
{
	struct fs_node *c = dir->u.first_child, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->gen != gen && !(c->flags & FS_NF_PENDING))
			fs_node_drop_locked(fs, c);
	}
}

static struct fs_node *child_or_new_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name,
					   int kind)
{
	if (!fs_name_valid(name))
		return NULL;
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	return n ? n : fs_node_new_locked(fs, dir, name, kind);
}

/* Starts a listing of l unless fresh; 1 = caller must list, 0 = fresh. */
static int listing_begin(struct fs_ctx *fs, struct fs_listing *l, int force)
{
	pthread_mutex_lock(&fs->lock);
	while (l->busy)
		pthread_cond_wait(&fs->list_cond, &fs->lock);
	int go = force || fs_listing_stale_locked(fs, l);
	if (go) {
		l->busy = 1;
		l->drops_start = l->drops;
	}
	pthread_mutex_unlock(&fs->lock);
	return go;
}

static void listing_end_locked(struct fs_ctx *fs, struct fs_listing *l, int ok)
{
	if (ok) {
		l->fresh_ms = fs_now_ms();
		l->drops_listed = l->drops_start;
	}
	l->busy = 0;
	pthread_cond_broadcast(&fs->list_cond);
}

static void variants_apply_locked(struct fs_ctx *fs, const struct api_variant_list *vl)
{
	struct fs_node *dir = fs->fixed[FS_INO_VARIANTS];
	uint32_t gen = ++fs->variants.gen;
	for (size_t i = 0; i < vl->n; i++) {
		struct fs_node *n = child_or_new_locked(fs, dir, vl->v[i].id, FS_K_VAR);
		char *doc = n ? api_variant_doc_format(&vl->v[i]) : NULL;
		if (!doc)
			continue;
		set_doc_locked(n, doc);
		n->gen = gen;
	}
	sweep_dir_locked(fs, dir, gen);
}

int fs_variants_refresh(struct fs_ctx *fs, int force)
{
	struct api_variant_list vl;
	struct api_err err;
	if (!listing_begin(fs, &fs->variants, force))
		return 0;
	int rc = api_variants_list(fs->api, &vl, &err);
	pthread_mutex_lock(&fs->lock);
	if (rc == 0)
		variants_apply_locked(fs, &vl);
	int have = fs->variants.fresh_ms != 0;
	listing_end_locked(fs, &fs->variants, rc == 0);
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0) {
		api_variant_list_release(&vl);
		return 0;
	}
	fs_log_api("list", "variants", rc, &err);
	return have ? 0 : rc; /* serve the last listing while the API fails */
}

static void keys_apply_locked(struct fs_ctx *fs, const struct api_key_list *kl)
{
	struct fs_node *dir = fs->fixed[FS_INO_KEYS];
	uint32_t gen = ++fs->keys.gen;
	for (size_t i = 0; i < kl->n; i++) {
		struct fs_node *n = child_or_new_locked(fs, dir, kl->keys[i].name, FS_K_KEY);
		size_t len = strlen(kl->keys[i].value);
		char *doc = n ? malloc(len + 2) : NULL;
		if (!doc)
			continue;
		memcpy(doc, kl->keys[i].value, len);
		memcpy(doc + len, "\n", 2);
		set_doc_locked(n, doc);
		n->gen = gen;
	}
	sweep_dir_locked(fs, dir, gen);
	fs->keys.fresh_ms = fs_now_ms();
}

int fs_keys_refresh(struct fs_ctx *fs, int force)
{
	struct api_key_list kl;
	struct api_err err;
	if (!listing_begin(fs, &fs->keys, force))
		return 0;
	int rc = api_keys_list(fs->api, &kl, &err);
	pthread_mutex_lock(&fs->lock);
	if (rc == 0)
		keys_apply_locked(fs, &kl);
	int have = fs->keys.fresh_ms != 0;
	listing_end_locked(fs, &fs->keys, rc == 0);
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0) {
		api_key_list_release(&kl);
		return 0;
	}
	fs_log_api("list", "keys", rc, &err);
	return have ? 0 : rc;
}

static int refresh_dir(struct fs_ctx *fs, struct fs_node *dir)
{
	return dir->kind == FS_K_VARDIR ? fs_variants_refresh(fs, 0) : fs_keys_refresh(fs, 0);
}

int fs_special_lookup(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		      struct fuse_entry_param *e)
{
	int rc = refresh_dir(fs, dir);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	if (n)
		fs_node_entry_locked(fs, n, e);
	pthread_mutex_unlock(&fs->lock);
	return n ? 0 : -ENOENT;
}

/* ---- open / create ----------------------------------------------------------------- */

static struct fs_fh *buf_fh(struct fs_node *n, const char *content, int writable)
{
	struct fs_fh *fh = calloc(1, sizeof(*fh));
	if (!fh)
		return NULL;
	fh->kind = FS_FH_BUF;
	fh->node = n;
	fh->fd = -1;
	fh->writable = writable;
	pthread_mutex_init(&fh->buf_lock, NULL);
	if (content) {
		fh->len = fh->cap = strlen(content);
		fh->buf = malloc(fh->len + 1);
		if (!fh->buf) {
			pthread_mutex_destroy(&fh->buf_lock);
			free(fh);
			return NULL;
		}
		memcpy(fh->buf, content, fh->len + 1);
	}
	return fh;
}

static int open_stats(struct fs_ctx *fs, struct fs_node *n, struct fs_fh **out)
{
	struct api_stats st;
	struct api_err err;
	char doc[128];
	int rc = api_stats_get(fs->api, &st, &err);
	if (rc < 0)
		return fs_log_api("read", "stats", rc, &err);
	api_stats_doc_format(st.allowed, st.current, doc, sizeof(doc));
	*out = buf_fh(n, doc, 0);
	if (!*out)
		return -ENOMEM;
	pthread_mutex_lock(&fs->lock);
	n->size = strlen(doc);
	n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

static int open_write_refused(struct fs_ctx *fs, struct fs_node *n, int flags)
{
	if (n->kind == FS_K_STATS)
		return -EACCES;
	if (fs->cfg.ro)
		return -EROFS;
	if (n->kind == FS_K_KEY) {
		fs_log(FS_LOG_INFO, "cannot write 'keys/%s': key values are generated by the API",
		       n->name);
		return -EPERM;
	}
	if (!(flags & O_TRUNC)) {
		fs_log(FS_LOG_INFO,
		       "cannot open 'variants/%s' for writing without O_TRUNC: write "
		       "the whole document",
		       n->name);
		return -EPERM;
	}
	return 0;
}

int fs_special_open(struct fs_ctx *fs, struct fs_node *n, int flags, struct fs_fh **out)
{
	int writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	int rc;
	if (writing && (rc = open_write_refused(fs, n, flags)) < 0)
		return rc;
	if (n->kind == FS_K_STATS)
		return open_stats(fs, n, out);
	if (!writing && (rc = refresh_dir(fs, n->parent)) < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	if (!(n->flags & FS_NF_LINKED)) {
		pthread_mutex_unlock(&fs->lock);
		return -ENOENT;
	}
	*out = buf_fh(n, writing ? NULL : n->u.doc, writing);
	if (*out)
		n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	return *out ? 0 : -ENOMEM; /* nothing written before close: the variant is unchanged */
}

static int create_key(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		      struct fuse_entry_param *e, struct fs_fh **out)
{
	struct api_key_list kl;
	struct api_err err;
	char path[64];
	snprintf(path, sizeof(path), "keys/%s", name);
	int rc = api_key_put(fs->api, name, &kl, &err);
	if (rc < 0)
		return fs_log_api("create", path, rc, &err);
	pthread_mutex_lock(&fs->lock);
	keys_apply_locked(fs, &kl);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	if (n) {
		*out = buf_fh(n, n->u.doc, 0);
		if (*out) {
			n->nopen++;
			fs_node_entry_locked(fs, n, e);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	api_key_list_release(&kl);
	return !n ? -EIO : (*out ? 0 : -ENOMEM);
}

int fs_special_create(struct fs_ctx *fs, struct fs_node *dir, const char *name,
		      struct fuse_entry_param *e, struct fs_fh **out)
{
	int is_var = dir->kind == FS_K_VARDIR;
	if (fs->cfg.ro)
		return -EROFS;
	if (!alnum_name(name, is_var ? API_MAX_VARIANT_ID_LEN : API_MAX_KEY_NAME_LEN)) {
		fs_log(FS_LOG_ERR, "cannot create '%s/%s': names are 1-%d letters and digits",
		       is_var ? "variants" : "keys", name,
		       is_var ? API_MAX_VARIANT_ID_LEN : API_MAX_KEY_NAME_LEN);
		return -EINVAL;
	}
	int rc = refresh_dir(fs, dir);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	pthread_mutex_unlock(&fs->lock);
	if (n)
		return -EEXIST;
	if (!is_var)
		return create_key(fs, dir, name, e, out);
	pthread_mutex_lock(&fs->lock);
	n = fs_node_new_locked(fs, dir, name, FS_K_VAR);
	if (n) {
		n->flags |= FS_NF_PENDING | FS_NF_SIZE;
		*out = buf_fh(n, NULL, 1);
		if (*out) {
			n->nopen++;
			(*out)->is_new = 1;
			fs_node_entry_locked(fs, n, e);
		} else {
			fs_node_unlink_locked(fs, n);
			n = NULL;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return n ? 0 : -ENOMEM;
}

/* ---- write / flush ----------------------------------------------------------------- */

/* Called with fh->buf_lock held. */
static ssize_t buf_write_locked(struct fs_fh *fh, const char *buf, size_t size, off_t off)
{
	if (off < 0 || (uint64_t)off + size > FS_MAX_DOC_BYTES)
		return -EFBIG;
	size_t end = (size_t)off + size;
	if (end > fh->cap) {
		char *b = realloc(fh->buf, end + 1);
		if (!b)
			return -ENOMEM;
		fh->buf = b;
		fh->cap = end;
	}
	if ((size_t)off > fh->len)
		memset(fh->buf + fh->len, 0, (size_t)off - fh->len);
	memcpy(fh->buf + off, buf, size);
	if (end > fh->len)
		fh->len = end;
	fh->buf[fh->len] = '\0';
	fh->dirty = 1;
	return (ssize_t)size;
}

ssize_t fs_special_write(struct fs_fh *fh, const char *buf, size_t size, off_t off)
{
	if (!fh->writable)
		return -EPERM;
	pthread_mutex_lock(&fh->buf_lock);
	ssize_t rc = buf_write_locked(fh, buf, size, off);
	pthread_mutex_unlock(&fh->buf_lock);
	return rc;
}

int fs_special_truncate(struct fs_fh *fh, off_t size)
{
	int rc = 0;
	if (!fh->writable)
		return -EPERM;
	if (size < 0 || size > FS_MAX_DOC_BYTES)
		return -EFBIG;
	pthread_mutex_lock(&fh->buf_lock);
	if ((size_t)size > fh->len) {
		char zero = 0;
		rc = buf_write_locked(fh, &zero, 1, size - 1) < 0 ? -ENOMEM : 0;
	} else {
		fh->len = (size_t)size;
		if (fh->buf)
			fh->buf[fh->len] = '\0';
		fh->dirty = 1;
	}
	pthread_mutex_unlock(&fh->buf_lock);
	return rc;
}

void fs_special_read(fuse_req_t req, struct fs_fh *fh, size_t size, off_t off)
{
	pthread_mutex_lock(&fh->buf_lock); /* a write may realloc buf meanwhile */
	if (off < 0 || (size_t)off >= fh->len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, fh->buf + off,
			       fh->len - (size_t)off < size ? fh->len - (size_t)off : size);
	pthread_mutex_unlock(&fh->buf_lock);
}

static int variant_send(struct fs_ctx *fs, struct fs_node *n, const char *opts, int never,
			int create, const char *path)
{
	struct api_variant out;
	struct api_err err;
	int rc = create ? api_variant_create(fs->api, n->name, opts, never, &out, &err)
			: api_variant_edit(fs->api, n->name, opts, never, &out, &err);
	if (rc < 0)
		return fs_log_api(create ? "create" : "edit", path, rc, &err);
	char *doc = api_variant_doc_format(&out);
	pthread_mutex_lock(&fs->lock);
	if (doc)
		set_doc_locked(n, doc);
	else
		n->flags &= ~FS_NF_PENDING;
	n->gen = fs->variants.gen;
	if (create)
		fs_var_names_add_locked(fs, n->name);
	pthread_mutex_unlock(&fs->lock);
	api_variant_release(&out);
	return 0;
}

int fs_special_flush(struct fs_ctx *fs, struct fs_fh *fh)
{
	char *opts = NULL, path[128];
	int never = -1;
	if (fh->kind != FS_FH_BUF || !fh->writable)
		return 0;
	pthread_mutex_lock(&fh->buf_lock);
	int dirty = fh->dirty, rc = 0;
	fh->dirty = 0;
	if (dirty) /* parsed under the lock: opts is a copy, sent without it */
		rc = api_variant_doc_parse(fh->buf ? fh->buf : "", fh->len, &opts, &never);
	pthread_mutex_unlock(&fh->buf_lock);
	if (!dirty)
		return 0;
	struct fs_node *n = fh->node;
	snprintf(path, sizeof(path), "variants/%s", n->name);
	if (rc < 0) {
		fs_log(FS_LOG_ERR,
		       "cannot write '%s': not a variant document (expected "
		       "{\"options\":{...},\"neverRequireSignedURLs\":false})",
		       path);
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	int create = (n->flags & FS_NF_PENDING) != 0;
	pthread_mutex_unlock(&fs->lock);
	rc = variant_send(fs, n, opts, never, create, path);
	free(opts);
	return rc;
}

void fs_special_release(struct fs_ctx *fs, struct fs_fh *fh)
{
	if (fh->kind != FS_FH_BUF || !fh->writable)
		return;
	fs_special_flush(fs, fh);
	pthread_mutex_lock(&fs->lock);
	if (fh->node->flags & FS_NF_PENDING)
		fs_node_drop_locked(fs, fh->node); /* a variant is never created empty */
	pthread_mutex_unlock(&fs->lock);
}

/* ---- unlink -------------------------------------------------------------------------- */

static int unlink_variant(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	struct api_err err;
	char path[128];
	snprintf(path, sizeof(path), "variants/%s", name);
	if (strcmp(name, "public") == 0) {
		fs_log(FS_LOG_INFO, "cannot remove 'variants/public': the API never deletes the "
				    "public variant");
		return -EPERM;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, dir, name);
	int pending = n && (n->flags & FS_NF_PENDING);
	if (pending)
		fs_node_unlink_locked(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return -ENOENT;
	if (pending)
		return 0;
	int rc = api_variant_delete(fs->api, name, &err);
	if (rc < 0 && rc != -ENOENT)
		return fs_log_api("delete", path, rc, &err);
	pthread_mutex_lock(&fs->lock);
	if (fs_node_child_locked(fs, dir, name) == n)
		fs_node_unlink_locked(fs, n);
	fs_var_names_del_locked(fs, name);
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

static int unlink_key(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	struct api_key_list kl;
	struct api_err err;
	char path[64];
	snprintf(path, sizeof(path), "keys/%s", name);
	pthread_mutex_lock(&fs->lock);
	int found = fs_node_child_locked(fs, dir, name) != NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!found)
		return -ENOENT;
	int rc = api_key_delete(fs->api, name, &kl, &err);
	if (rc < 0)
		return fs_log_api("delete", path, rc, &err);
	pthread_mutex_lock(&fs->lock);
	keys_apply_locked(fs, &kl); /* the API regenerates "default" after the last key */
	pthread_mutex_unlock(&fs->lock);
	api_key_list_release(&kl);
	return 0;
}

int fs_special_unlink(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	if (fs->cfg.ro)
		return -EROFS;
	return dir->kind == FS_K_VARDIR ? unlink_variant(fs, dir, name) : unlink_key(fs, dir, name);
}

/* ---- statfs --------------------------------------------------------------------------- */

void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ctx *fs = fuse_req_userdata(req);
	struct api_stats st;
	struct api_err err;
	struct statvfs sv;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	/* Never older than dir_ttl either: "changes made elsewhere appear after dir_ttl". */
	int64_t ttl_ms = (int64_t)fs->cfg.dir_ttl * 1000;
	if (ttl_ms > FS_STATS_TTL_MS)
		ttl_ms = FS_STATS_TTL_MS;
	int fresh = fs->statfs_ms && fs_now_ms() - fs->statfs_ms < ttl_ms;
	st = fs->statfs_cache;
	pthread_mutex_unlock(&fs->lock);
	if (!fresh) {
		rc = api_stats_get(fs->api, &st, &err);
		if (rc < 0) {
			fuse_reply_err(req, -fs_log_api("read", "stats", rc, &err));
			return;
		}
		pthread_mutex_lock(&fs->lock);
		fs->statfs_cache = st;
		fs->statfs_ms = fs_now_ms();
		pthread_mutex_unlock(&fs->lock);
	}
	uint64_t allowed = st.allowed > 0 ? (uint64_t)st.allowed : 0;
	uint64_t used = st.current > 0 ? (uint64_t)st.current : 0;
	uint64_t free_imgs = allowed > used ? allowed - used : 0;
	uint64_t per = API_MAX_IMAGE_BYTES / 4096; /* blocks one image may take at most */
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = allowed * per;
	sv.f_bfree = sv.f_bavail = free_imgs * per;
	sv.f_files = allowed;
	sv.f_ffree = sv.f_favail = free_imgs;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

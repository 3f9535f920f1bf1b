/*
 * fs_renditions.c - renditions/<variant>/<image path>: what each variant of each image
 * looks like, read from its delivery URL.
 *
 * No table of its own. renditions/ is a fixed node; everything below it is a virtual inode
 * that names an images/ node and a variant slot:
 *     ino = FS_REND_BIT | slot << FS_REND_SLOT_SHIFT | <ino of the images/ node>
 * (renditions/<v> itself mirrors images/, ino FS_INO_IMAGES). So every directory and file
 * of images/ appears under every variant with no node, no allocation and no request per
 * file: lookups and readdirs answer from the images listing (refreshed after dir_ttl like
 * images/), renditions/ from the variants/ listing. A slot is given to a variant name the
 * first time it is seen and never reused while mounted, so an inode keeps its meaning. The
 * kernel's lookup counts need no bookkeeping: a virtual inode resolves as long as its
 * images/ node exists (node inodes are never reused).
 *
 * Reading. An open fetches GET <delivery_url>/<account hash>/<id>/<variant> (signed when the
 * image is private and the variant requires it; fs_deliver.c) through the blob cache, keyed
 * by (variant, the variant's options and neverRequireSignedURLs, id) at the image's upload
 * time: a new upload or an edited variant gets a new key and never serves a stale
 * rendition. Delivery requests carry no credentials and stay outside the API budget
 * (api_delivery_get). Files are opened direct_io, and their size is the rendition's exact
 * size once one open has fetched it (0 before: ls -l costs nothing).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FS_REND_BIT ((fuse_ino_t)1 << 62)
#define FS_REND_SLOT_SHIFT 40
#define FS_REND_MIRROR_MASK (((fuse_ino_t)1 << FS_REND_SLOT_SHIFT) - 1)
#define FS_REND_MAX_SLOTS 4095 /* variant names seen in one mount (100 at a time) */
#define FS_REND_SIZE_BUCKETS 4096
#define FS_REND_MAX_SIZES (1u << 20) /* renditions whose size is remembered */
#define FS_REND_MAX_URL 4096

struct rend_size {
	struct rend_size *next;
	fuse_ino_t ino;
	int64_t version;
	uint64_t opts_hash;
	uint64_t size;
};

struct fs_rend {
	char *slot_name[FS_REND_MAX_SLOTS + 1];	   /* 1-based */
	uint64_t slot_hash[FS_REND_MAX_SLOTS + 1]; /* options hash last fetched with */
	size_t nslots;
	struct rend_size *sizes[FS_REND_SIZE_BUCKETS];
	size_t nsizes;
};

/* One directory entry of a snapshot taken at opendir. */
struct rend_ent {
	fuse_ino_t ino;
	size_t name_off;
};

int fs_rend_is(fuse_ino_t ino)
{
	return ino == FS_INO_RENDITIONS || (ino & FS_REND_BIT);
}

static int rend_virtual(fuse_ino_t ino)
{
	return (ino & FS_REND_BIT) != 0;
}

static size_t ino_slot(fuse_ino_t ino)
{
	return (size_t)((ino & ~FS_REND_BIT) >> FS_REND_SLOT_SHIFT);
}

static fuse_ino_t ino_make(size_t slot, fuse_ino_t mirror)
{
	return FS_REND_BIT | ((fuse_ino_t)slot << FS_REND_SLOT_SHIFT) | mirror;
}

static struct fs_rend *rend_locked(struct fs_ctx *fs)
{
	if (!fs->rend)
		fs->rend = calloc(1, sizeof(*fs->rend));
	return fs->rend;
}

void fs_rend_free(struct fs_ctx *fs)
{
	struct fs_rend *r = fs->rend;
	if (!r)
		return;
	for (size_t i = 1; i <= r->nslots; i++)
		free(r->slot_name[i]);
	for (size_t b = 0; b < FS_REND_SIZE_BUCKETS; b++) {
		while (r->sizes[b]) {
			struct rend_size *s = r->sizes[b];
			r->sizes[b] = s->next;
			free(s);
		}
	}
	free(r);
	fs->rend = NULL;
}

/* Slot of a variant name (given one when new); 0 when out of memory or slots. */
static size_t slot_of_locked(struct fs_ctx *fs, const char *name)
{
	struct fs_rend *r = rend_locked(fs);
	if (!r)
		return 0;
	for (size_t i = 1; i <= r->nslots; i++)
		if (strcmp(r->slot_name[i], name) == 0)
			return i;
	if (r->nslots >= FS_REND_MAX_SLOTS || !(r->slot_name[r->nslots + 1] = strdup(name)))
		return 0;
	return ++r->nslots;
}

static const char *slot_name_locked(struct fs_ctx *fs, size_t slot)
{
	struct fs_rend *r = fs->rend;
	return r && slot >= 1 && slot <= r->nslots ? r->slot_name[slot] : NULL;
}

static int variant_listed_locked(struct fs_ctx *fs, const char *name)
{
	struct fs_node *n = fs_node_child_locked(fs, fs->fixed[FS_INO_VARIANTS], name);
	return n && n->kind == FS_K_VAR && !(n->flags & FS_NF_PENDING);
}

/* The images/ node a virtual inode mirrors, NULL when gone or not mirrored. */
static struct fs_node *mirror_locked(struct fs_ctx *fs, fuse_ino_t ino)
{
	if (!slot_name_locked(fs, ino_slot(ino)))
		return NULL;
	struct fs_node *n = fs_node_get_locked(fs, ino & FS_REND_MIRROR_MASK);
	if (!n || !(n->flags & FS_NF_LINKED) || !fs_node_in_images(n) ||
	    (n->kind != FS_K_DIR && n->kind != FS_K_IMG) ||
	    (n->kind == FS_K_IMG && (n->flags & FS_NF_PENDING)))
		return NULL;
	return n;
}

static struct rend_size *size_find_locked(struct fs_ctx *fs, fuse_ino_t ino)
{
	struct fs_rend *r = fs->rend;
	if (!r)
		return NULL;
	struct rend_size *s = r->sizes[ino % FS_REND_SIZE_BUCKETS];
	while (s && s->ino != ino)
		s = s->next;
	return s;
}

/* Records a rendition's size; returns 1 when the kernel may hold another one. */
static int size_set_locked(struct fs_ctx *fs, fuse_ino_t ino, int64_t version, uint64_t opts_hash,
			   uint64_t size)
{
	struct fs_rend *r = rend_locked(fs);
	struct rend_size *s = size_find_locked(fs, ino);
	if (!r)
		return 1;
	if (s && s->version == version && s->opts_hash == opts_hash && s->size == size)
		return 0;
	if (!s) {
		if (r->nsizes >= FS_REND_MAX_SIZES || !(s = calloc(1, sizeof(*s))))
			return 1; /* sizes stay 0 past the cap: only ls -l is less exact */
		s->ino = ino;
		s->next = r->sizes[ino % FS_REND_SIZE_BUCKETS];
		r->sizes[ino % FS_REND_SIZE_BUCKETS] = s;
		r->nsizes++;
	}
	s->version = version;
	s->opts_hash = opts_hash;
	s->size = size;
	return 1;
}

/* Attributes of a virtual inode over mirror node m; returns the attribute timeout. A file
 * gets the full timeout even while its size is unknown (0), so `ls -l` costs no GETATTR per
 * file: the open that learns the size tells the kernel to drop its attributes before it
 * replies (as images/ does, fs_images.c), and reads are direct_io, never cut at a cached 0. */
static double attr_locked(struct fs_ctx *fs, fuse_ino_t ino, const struct fs_node *m,
			  struct stat *st)
{
	fs_node_attr_locked(fs, m, st);
	st->st_ino = ino;
	if (m->kind == FS_K_DIR) {
		st->st_mode = S_IFDIR | 0555;
		return fs->ttl;
	}
	st->st_mode = S_IFREG | 0444;
	struct rend_size *s = size_find_locked(fs, ino);
	size_t slot = ino_slot(ino);
	int known = s && s->version == m->uploaded_ms && s->opts_hash == fs->rend->slot_hash[slot];
	st->st_size = known ? (off_t)s->size : 0;
	st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	return fs->ttl;
}

static int images_fresh(struct fs_ctx *fs)
{
	int rc = fs_images_refresh(fs, 0);
	pthread_mutex_lock(&fs->lock);
	int have = fs->images.fresh_ms != 0;
	pthread_mutex_unlock(&fs->lock);
	return rc < 0 && have ? 0 : rc; /* serve the last listing while the API fails */
}

/* ---- lookup and getattr --------------------------------------------------------- */

/* Entry for name in renditions/ (a variant). */
static int lookup_variant(struct fs_ctx *fs, const char *name, struct fuse_entry_param *e)
{
	int rc = fs_variants_refresh(fs, 0);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	size_t slot = variant_listed_locked(fs, name) ? slot_of_locked(fs, name) : 0;
	struct fs_node *m = fs->fixed[FS_INO_IMAGES];
	if (slot) {
		e->ino = ino_make(slot, FS_INO_IMAGES);
		e->attr_timeout = attr_locked(fs, e->ino, m, &e->attr);
	}
	pthread_mutex_unlock(&fs->lock);
	return slot ? 0 : -ENOENT;
}

static int lookup_child(struct fs_ctx *fs, fuse_ino_t parent, const char *name,
			struct fuse_entry_param *e)
{
	int rc = images_fresh(fs);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *dir = mirror_locked(fs, parent);
	struct fs_node *c =
	    dir && dir->kind == FS_K_DIR ? fs_node_child_locked(fs, dir, name) : NULL;
	if (c) {
		e->ino = ino_make(ino_slot(parent), c->ino);
		if (mirror_locked(fs, e->ino))
			e->attr_timeout = attr_locked(fs, e->ino, c, &e->attr);
		else
			c = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!dir)
		return -ENOENT;
	return c ? 0 : -ENOENT;
}

void fs_rend_lookup(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	int rc = parent == FS_INO_RENDITIONS ? lookup_variant(fs, name, &e)
					     : lookup_child(fs, parent, name, &e);
	if (rc == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FS_NEG_TIMEOUT;
		rc = 0;
	} else if (rc == 0) {
		e.generation = 1;
		e.entry_timeout = fs->ttl;
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

void fs_rend_getattr(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t ino)
{
	struct stat st;
	double timeout = 0;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *m = mirror_locked(fs, ino);
	if (m)
		timeout = attr_locked(fs, ino, m, &st);
	pthread_mutex_unlock(&fs->lock);
	if (m)
		fuse_reply_attr(req, &st, timeout);
	else
		fuse_reply_err(req, ENOENT);
}

/* ---- directories ---------------------------------------------------------------- */

/* Appends one entry to a snapshot being built (ents, then names, in one buffer later). */
struct snap {
	struct rend_ent *ents;
	size_t n, cap;
	char *names;
	size_t nlen, ncap;
	int err;
};

static void snap_add(struct snap *s, fuse_ino_t ino, const char *name)
{
	size_t l = strlen(name) + 1;
	if (s->err)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct rend_ent *p = realloc(s->ents, cap * sizeof(*p));
		if (!p) {
			s->err = -ENOMEM;
			return;
		}
		s->ents = p;
		s->cap = cap;
	}
	if (s->nlen + l > s->ncap) {
		size_t cap = s->ncap ? s->ncap * 2 : 4096;
		while (cap < s->nlen + l)
			cap *= 2;
		char *p = realloc(s->names, cap);
		if (!p) {
			s->err = -ENOMEM;
			return;
		}
		s->names = p;
		s->ncap = cap;
	}
	memcpy(s->names + s->nlen, name, l);
	s->ents[s->n].ino = ino;
	s->ents[s->n].name_off = s->nlen;
	s->n++;
	s->nlen += l;
}

/* renditions/: one directory per listed variant. */
static void snap_variants_locked(struct fs_ctx *fs, struct snap *s)
{
	for (struct fs_node *c = fs->fixed[FS_INO_VARIANTS]->u.first_child; c; c = c->next) {
		if (c->kind != FS_K_VAR || (c->flags & FS_NF_PENDING))
			continue;
		size_t slot = slot_of_locked(fs, c->name);
		if (slot)
			snap_add(s, ino_make(slot, FS_INO_IMAGES), c->name);
	}
}

static void snap_children_locked(struct fs_ctx *fs, fuse_ino_t ino, struct snap *s)
{
	struct fs_node *dir = mirror_locked(fs, ino);
	if (!dir || dir->kind != FS_K_DIR) {
		s->err = dir ? -ENOTDIR : -ENOENT;
		return;
	}
	for (struct fs_node *c = dir->u.first_child; c; c = c->next) {
		fuse_ino_t ci = ino_make(ino_slot(ino), c->ino);
		if (mirror_locked(fs, ci))
			snap_add(s, ci, c->name);
	}
}

void fs_rend_opendir(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct snap s = {0};
	int rc = ino == FS_INO_RENDITIONS ? fs_variants_refresh(fs, 0) : images_fresh(fs);
	struct fs_fh *fh = rc == 0 ? calloc(1, sizeof(*fh)) : NULL;
	if (rc == 0 && !fh)
		rc = -ENOMEM;
	if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		if (ino == FS_INO_RENDITIONS)
			snap_variants_locked(fs, &s);
		else
			snap_children_locked(fs, ino, &s);
		pthread_mutex_unlock(&fs->lock);
		rc = s.err;
	}
	/* one buffer: the entries, then their names */
	char *buf = rc == 0 ? malloc(s.n * sizeof(*s.ents) + s.nlen + 1) : NULL;
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	if (rc < 0) {
		free(s.ents);
		free(s.names);
		free(fh);
		fuse_reply_err(req, -rc);
		return;
	}
	memcpy(buf, s.ents, s.n * sizeof(*s.ents));
	memcpy(buf + s.n * sizeof(*s.ents), s.names ? s.names : "", s.nlen);
	free(s.ents);
	free(s.names);
	fh->kind = FS_FH_REND_DIR;
	fh->fd = -1;
	fh->buf = buf;
	fh->len = s.n;
	fh->dir_ino = ino;
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_fh_free(fh);
}

size_t fs_rend_dirent_locked(fuse_req_t req, struct fs_ctx *fs, struct fs_fh *fh, size_t idx,
			     char *buf, size_t room, int plus)
{
	struct fuse_entry_param e;
	const struct rend_ent *ents = (const struct rend_ent *)fh->buf;
	const char *name;
	memset(&e, 0, sizeof(e));
	if (idx < 2) {
		fuse_ino_t self = fh->dir_ino;
		e.ino = idx == 0 || self != FS_INO_RENDITIONS ? self : FS_INO_ROOT;
		name = idx == 0 ? "." : "..";
		e.attr.st_ino = e.ino;
		e.attr.st_mode = S_IFDIR | 0555;
		/* the kernel counts no lookup for "." and ".." (timeouts 0: nothing cached) */
		size_t used =
		    plus ? fuse_add_direntry_plus(req, buf, room, name, &e, (off_t)(idx + 1))
			 : fuse_add_direntry(req, buf, room, name, &e.attr, (off_t)(idx + 1));
		return used > room ? 0 : used;
	}
	e.ino = ents[idx - 2].ino;
	name = fh->buf + fh->len * sizeof(*ents) + ents[idx - 2].name_off;
	struct fs_node *m = mirror_locked(fs, e.ino);
	if (!m)
		return (size_t)-1;
	e.generation = 1;
	e.attr_timeout = attr_locked(fs, e.ino, m, &e.attr);
	e.entry_timeout = fs->ttl;
	size_t used = plus ? fuse_add_direntry_plus(req, buf, room, name, &e, (off_t)(idx + 1))
			   : fuse_add_direntry(req, buf, room, name, &e.attr, (off_t)(idx + 1));
	return used > room ? 0 : used;
}

/* ---- reading -------------------------------------------------------------------- */

/* What an open needs, copied out of the table. */
struct rend_src {
	char *id, *variant, *path, *hash;
	int64_t version;
	int rsu;
};

static void src_release(struct rend_src *s)
{
	free(s->id);
	free(s->variant);
	free(s->path);
	free(s->hash);
}

/* The account hash: the last segment of the learned variant URL base ".../<hash>/". */
static char *account_hash_locked(struct fs_ctx *fs)
{
	const char *b = fs->var_base;
	size_t n = b ? strlen(b) : 0;
	if (n < 2 || b[n - 1] != '/')
		return NULL;
	size_t start = n - 1;
	while (start > 0 && b[start - 1] != '/')
		start--;
	return start < n - 1 ? strndup(b + start, n - 1 - start) : NULL;
}

static int src_get(struct fs_ctx *fs, fuse_ino_t ino, struct rend_src *src)
{
	memset(src, 0, sizeof(*src));
	pthread_mutex_lock(&fs->lock);
	struct fs_node *m = mirror_locked(fs, ino);
	int rc = !m ? -ENOENT : m->kind != FS_K_IMG ? -EISDIR : 0;
	if (rc == 0) {
		src->id = fs_node_id_locked(fs, m);
		src->variant = strdup(slot_name_locked(fs, ino_slot(ino)));
		src->hash = account_hash_locked(fs);
		src->version = m->uploaded_ms;
		src->rsu = (m->flags & FS_NF_RSU) != 0;
		if (src->id && src->variant)
			rc = asprintf(&src->path, "renditions/%s/%s", src->variant, src->id) < 0
				 ? -ENOMEM
				 : 0;
		else
			rc = -ENOMEM;
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0 && !src->hash) {
		fs_log(FS_LOG_ERR,
		       "cannot read '%s': the account's delivery hash is not known yet "
		       "(no variant URL seen in the listing)",
		       src->path);
		rc = -EIO;
	}
	if (rc < 0) {
		src_release(src);
		memset(src, 0, sizeof(*src));
	}
	return rc;
}

/* delivery_url/<hash>/<id, '/' kept, the rest percent-encoded>/<variant> */
static int build_url(struct fs_ctx *fs, const struct rend_src *s, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/%s/", fs->cfg.delivery_url, s->hash);
	if (n < 0 || (size_t)n >= outsz)
		return -ENAMETOOLONG;
	size_t pos = (size_t)n;
	for (const unsigned char *p = (const unsigned char *)s->id; *p; p++) {
		int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
		if (pos + 4 >= outsz)
			return -ENAMETOOLONG;
		pos += plain ? (size_t)snprintf(out + pos, outsz - pos, "%c", *p)
			     : (size_t)snprintf(out + pos, outsz - pos, "%%%02X", *p);
	}
	n = snprintf(out + pos, outsz - pos, "/%s", s->variant);
	return n < 0 || (size_t)n >= outsz - pos ? -ENAMETOOLONG : 0;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct rend_fill {
	struct fs_ctx *fs;
	const char *url;
	struct api_err err;
	int called;
};

static int rend_fill_fn(int fd, void *arg)
{
	struct rend_fill *f = arg;
	f->called = 1;
	return api_delivery_get(f->fs->api, f->url, fd, 0, NULL, &f->err);
}

/* The URL to fetch: signed for a private image unless the variant never requires it. */
static int fetch_url(struct fs_ctx *fs, const struct rend_src *s, int never, char *url,
		     size_t urlsz)
{
	int rc = build_url(fs, s, url, urlsz);
	if (rc < 0 || !s->rsu || never)
		return rc;
	char *key = NULL, plain[FS_REND_MAX_URL];
	snprintf(plain, sizeof(plain), "%s", url);
	rc = fs_sign_key(fs, &key);
	if (rc == 0) {
		rc = fs_sign_one(fs, key, plain, url, urlsz);
		explicit_bzero(key, strlen(key));
		free(key);
	}
	if (rc < 0)
		fs_log(FS_LOG_ERR, "cannot read '%s': cannot sign its delivery URL: %s%s", s->path,
		       strerror(-rc), rc == -ENOKEY ? " (no such signing key: see keys/)" : "");
	return rc;
}

/* Opens the cached rendition (fetching it once); *fd and *size on success, *kattr = 1 when
 * the kernel may hold another size. */
static int rend_fd(struct fs_ctx *fs, fuse_ino_t ino, int *fd, uint64_t *size, int *kattr)
{
	struct rend_src s;
	char *opts = NULL, *key = NULL, url[FS_REND_MAX_URL];
	int never = 0, rc = src_get(fs, ino, &s);
	if (rc < 0)
		return rc;
	rc = fs_variant_info(fs, s.variant, &opts, &never);
	if (rc == 0)
		rc = fetch_url(fs, &s, never, url, sizeof(url));
	/* the key names everything the bytes depend on: a new upload (version), an edited
	 * variant (options, flag) or another variant never meets an old rendition */
	if (rc == 0 &&
	    asprintf(&key, "rendition\n%s\n%s\n%d\n%s", s.variant, opts, never, s.id) < 0)
		rc = -ENOMEM;
	if (rc == 0) {
		struct rend_fill f = {.fs = fs, .url = url};
		rc = cache_get(fs->cache, key, s.version, rend_fill_fn, &f, fd, size);
		if (rc < 0 && f.called)
			fs_log_api("read", s.path, rc, &f.err);
		else if (rc < 0)
			fs_log(FS_LOG_ERR, "cannot read '%s': cache: %s", s.path, strerror(-rc));
	}
	if (rc == 0) {
		uint64_t h = fnv1a(fnv1a(1469598103934665603ull, opts), never ? "1" : "0");
		pthread_mutex_lock(&fs->lock);
		struct fs_rend *r = rend_locked(fs);
		if (r) {
			r->slot_hash[ino_slot(ino)] = h;
			*kattr = size_set_locked(fs, ino, s.version, h, *size);
		}
		pthread_mutex_unlock(&fs->lock);
	}
	free(key);
	free(opts);
	src_release(&s);
	return rc;
}

void fs_rend_open(fuse_req_t req, struct fs_ctx *fs, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd = -1;
	uint64_t size = 0;
	if (!rend_virtual(ino)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	int kattr = 0, rc = rend_fd(fs, ino, &fd, &size, &kattr);
	struct fs_fh *fh = rc == 0 ? calloc(1, sizeof(*fh)) : NULL;
	if (rc == 0 && !fh)
		rc = -ENOMEM;
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, -rc);
		return;
	}
	if (kattr && fs->se) { /* before the reply: see attr_locked */
		atomic_fetch_add_explicit(&fs->ops.inval_attr, 1, memory_order_relaxed);
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
	}
	fh->kind = FS_FH_REND;
	fh->fd = fd;
	fh->len = size;
	fi->direct_io = 1; /* the size the kernel holds may be 0 (not fetched yet) */
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_fh_free(fh);
}

void fs_rend_read(fuse_req_t req, struct fs_fh *fh, size_t size, off_t off)
{
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = pread(fh->fd, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

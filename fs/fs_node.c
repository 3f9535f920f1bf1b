/*
 * fs_node.c - the inode table: nodes, their attributes and cache timeouts, kernel dentry
 * invalidation; and freeing the account-wide variant URL pattern the table's images share
 * (fs_list.c learns it) and the file handles requests hold (fs_fh_free).
 *
 * Every entry the mount shows is one struct fs_node: a single allocation with the name
 * inline (a rename to a longer name puts the new one in its own allocation), found by inode number (ino hash) and by (parent, name) (name hash), and chained
 * to its siblings for readdir. Image nodes keep only fixed-size fields; the few strings some
 * images have (metadata, creator, a filename different from the name, unusual variant URLs)
 * hang off one optional `extra` pointer. With ~15-byte names a listed image costs ~120 bytes
 * of node plus 8 bytes of hash buckets; a filename that is the name plus a common extension
 * is a 3-bit index (FS_NF_FNEXT_*), not a string.
 *
 * Both hash tables double when their load passes 2 (chains average 1-2 nodes: one pointer
 * per node per table instead of two); they never shrink (a mount that once listed N images
 * will likely list them again).
 */
#include "fs.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_INIT_BUCKETS 1024

static size_t hash_ino(fuse_ino_t ino, size_t nb)
{
	uint64_t x = ino * 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 17) & (nb - 1);
}

static size_t hash_name(fuse_ino_t parent, const char *name, size_t nb)
{
	uint64_t h = 1469598103934665603ull ^ parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29)) & (nb - 1);
}

static int grow_ino(struct fs_ctx *fs)
{
	size_t nb = fs->ino_buckets * 2;
	struct fs_node **t = calloc(nb, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < fs->ino_buckets; i++) {
		struct fs_node *n = fs->ino_tab[i], *next;
		for (; n; n = next) {
			next = n->ino_next;
			size_t b = hash_ino(n->ino, nb);
			n->ino_next = t[b];
			t[b] = n;
		}
	}
	free(fs->ino_tab);
	fs->ino_tab = t;
	fs->ino_buckets = nb;
	return 0;
}

static int grow_name(struct fs_ctx *fs)
{
	size_t nb = fs->name_buckets * 2;
	struct fs_node **t = calloc(nb, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < fs->name_buckets; i++) {
		struct fs_node *n = fs->name_tab[i], *next;
		for (; n; n = next) {
			next = n->name_next;
			size_t b = hash_name(n->parent->ino, n->name, nb);
			n->name_next = t[b];
			t[b] = n;
		}
	}
	free(fs->name_tab);
	fs->name_tab = t;
	fs->name_buckets = nb;
	return 0;
}

static void ino_insert(struct fs_ctx *fs, struct fs_node *n)
{
	if (fs->ino_count >= 2 * fs->ino_buckets)
		grow_ino(fs); /* on ENOMEM the chains just get longer */
	size_t b = hash_ino(n->ino, fs->ino_buckets);
	n->ino_next = fs->ino_tab[b];
	fs->ino_tab[b] = n;
	fs->ino_count++;
}

static void ino_remove(struct fs_ctx *fs, struct fs_node *n)
{
	struct fs_node **pp = &fs->ino_tab[hash_ino(n->ino, fs->ino_buckets)];
	for (; *pp; pp = &(*pp)->ino_next) {
		if (*pp == n) {
			*pp = n->ino_next;
			fs->ino_count--;
			return;
		}
	}
}

/* Links n under its parent: name hash and sibling list. */
static void name_link(struct fs_ctx *fs, struct fs_node *n)
{
	struct fs_node *dir = n->parent;
	if (fs->name_count >= 2 * fs->name_buckets)
		grow_name(fs);
	size_t b = hash_name(dir->ino, n->name, fs->name_buckets);
	n->name_next = fs->name_tab[b];
	fs->name_tab[b] = n;
	fs->name_count++;
	n->prev = NULL;
	n->next = dir->u.first_child;
	if (n->next)
		n->next->prev = n;
	dir->u.first_child = n;
	n->flags |= FS_NF_LINKED;
	if (n->kind == FS_K_IMG)
		fs->n_images++;
}

static void name_unlink(struct fs_ctx *fs, struct fs_node *n)
{
	struct fs_node **pp = &fs->name_tab[hash_name(n->parent->ino, n->name, fs->name_buckets)];
	for (; *pp; pp = &(*pp)->name_next) {
		if (*pp == n) {
			*pp = n->name_next;
			fs->name_count--;
			break;
		}
	}
	if (n->prev)
		n->prev->next = n->next;
	else
		n->parent->u.first_child = n->next;
	if (n->next)
		n->next->prev = n->prev;
	n->next = n->prev = NULL;
	n->flags &= ~FS_NF_LINKED;
	if (n->kind == FS_K_IMG)
		fs->n_images--;
}

static struct fs_node *node_alloc(const char *name, int kind)
{
	size_t len = strlen(name);
	struct fs_node *n = calloc(1, offsetof(struct fs_node, name_buf) + len + 1);
	if (!n)
		return NULL;
	memcpy(n->name_buf, name, len + 1);
	n->name = n->name_buf;
	n->kind = (uint8_t)kind;
	return n;
}

static void extra_free(struct fs_img_extra *x)
{
	if (!x)
		return;
	free(x->meta);
	free(x->creator);
	free(x->filename);
	free(x->variants_raw);
	free(x->fail);
	free(x);
}

/* Frees n and what it owns; it must be out of both hash tables. */
static void node_destroy(struct fs_node *n)
{
	if (n->kind == FS_K_IMG)
		extra_free(n->u.img);
	else if (n->kind == FS_K_VAR || n->kind == FS_K_KEY)
		free(n->u.doc);
	if (n->flags & FS_NF_NAMEHEAP)
		free(n->name);
	free(n);
}

static void node_free(struct fs_ctx *fs, struct fs_node *n)
{
	ino_remove(fs, n);
	node_destroy(n);
}

static int is_dir_kind(int kind)
{
	return kind == FS_K_ROOT || kind == FS_K_DIR || kind == FS_K_VARDIR || kind == FS_K_KEYDIR ||
	       kind == FS_K_CTLDIR || kind == FS_K_RENDROOT;
}

int fs_table_init(struct fs_ctx *fs)
{
	static const struct {
		const char *name;
		int kind;
	} fixed[] = {{"", FS_K_ROOT},
		     {"images", FS_K_DIR},
		     {"variants", FS_K_VARDIR},
		     {"keys", FS_K_KEYDIR},
		     {"stats", FS_K_STATS},
		     /* renditions/ (fs_renditions.c) */
		     {"renditions", FS_K_RENDROOT}};

	fs->ino_buckets = fs->name_buckets = FS_INIT_BUCKETS;
	fs->ino_tab = calloc(fs->ino_buckets, sizeof(*fs->ino_tab));
	fs->name_tab = calloc(fs->name_buckets, sizeof(*fs->name_tab));
	if (!fs->ino_tab || !fs->name_tab)
		return -ENOMEM;
	for (int i = 0; i < (int)(sizeof(fixed) / sizeof(fixed[0])); i++) {
		struct fs_node *n = node_alloc(fixed[i].name, fixed[i].kind);
		if (!n)
			return -ENOMEM;
		n->ino = (fuse_ino_t)(i + 1);
		n->nlookup = 1; /* permanent */
		n->uploaded_ms = fs->mount_ms;
		ino_insert(fs, n);
		fs->fixed[i + 1] = n;
		if (i > 0) {
			n->parent = fs->fixed[FS_INO_ROOT];
			name_link(fs, n);
		}
	}
	fs->next_ino = FS_INO_LAST_FIXED + 1;
	return 0;
}

void fs_var_free_locked(struct fs_ctx *fs)
{
	for (size_t i = 0; i < fs->n_var_names; i++)
		free(fs->var_names[i]);
	free(fs->var_names);
	free(fs->var_base);
	fs->var_names = NULL;
	fs->var_base = NULL;
	fs->n_var_names = 0;
}

void fs_table_free(struct fs_ctx *fs)
{
	if (fs->ino_tab) {
		for (size_t i = 0; i < fs->ino_buckets; i++) {
			struct fs_node *n = fs->ino_tab[i], *next;
			for (; n; n = next) {
				next = n->ino_next;
				node_destroy(n);
			}
		}
	}
	free(fs->ino_tab);
	free(fs->name_tab);
	fs->ino_tab = fs->name_tab = NULL;
	while (fs->tombs) {
		struct fs_tomb *t = fs->tombs;
		fs->tombs = t->next;
		free(t);
	}
	fs_var_free_locked(fs);
}

struct fs_node *fs_node_get_locked(struct fs_ctx *fs, fuse_ino_t ino)
{
	struct fs_node *n = fs->ino_tab[hash_ino(ino, fs->ino_buckets)];
	while (n && n->ino != ino)
		n = n->ino_next;
	return n;
}

struct fs_node *fs_node_child_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name)
{
	struct fs_node *n = fs->name_tab[hash_name(dir->ino, name, fs->name_buckets)];
	for (; n; n = n->name_next)
		if (n->parent == dir && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

struct fs_node *fs_node_new_locked(struct fs_ctx *fs, struct fs_node *dir, const char *name,
				   int kind)
{
	struct fs_node *n = node_alloc(name, kind);
	if (!n)
		return NULL;
	n->ino = fs->next_ino++;
	n->parent = dir;
	ino_insert(fs, n);
	name_link(fs, n);
	return n;
}

void fs_node_maybe_free_locked(struct fs_ctx *fs, struct fs_node *n)
{
	if (n->ino <= FS_INO_LAST_FIXED || (n->flags & FS_NF_LINKED) || n->nlookup || n->nopen)
		return;
	if (is_dir_kind(n->kind) && n->u.first_child)
		return;
	node_free(fs, n);
}

void fs_node_unlink_locked(struct fs_ctx *fs, struct fs_node *n)
{
	if (!(n->flags & FS_NF_LINKED) || n->ino <= FS_INO_LAST_FIXED)
		return;
	name_unlink(fs, n);
	fs_node_maybe_free_locked(fs, n);
}

/*
 * In place: the kernel still knows n's inode, and handles opened meanwhile (or requests in
 * flight on it) hold the pointer, so n is never replaced by a copy. The new name goes into
 * name_buf when it fits (name_buf always holds a string at least as long as the name the
 * node was made with), else into a malloc'd string (FS_NF_NAMEHEAP).
 */
int fs_node_move_locked(struct fs_ctx *fs, struct fs_node *n, struct fs_node *dir,
			const char *name)
{
	size_t len = strlen(name);
	char *heap = NULL;
	if (len > strlen(n->name_buf) && !(heap = strdup(name)))
		return -ENOMEM;
	char *old = n->flags & FS_NF_NAMEHEAP ? n->name : NULL;
	if (n->flags & FS_NF_LINKED)
		name_unlink(fs, n);
	if (heap) {
		n->name = heap;
		n->flags |= FS_NF_NAMEHEAP;
	} else {
		memmove(n->name_buf, name, len + 1);
		n->name = n->name_buf;
		n->flags &= ~FS_NF_NAMEHEAP;
	}
	free(old); /* after the copy: name may point into it */
	n->parent = dir;
	name_link(fs, n);
	return 0;
}

void fs_node_forget_locked(struct fs_ctx *fs, struct fs_node *n, uint64_t nlookup)
{
	if (n->ino <= FS_INO_LAST_FIXED)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	/* Forgotten entirely: the kernel holds no attributes and no reply is in flight (each
	 * reply counted one lookup when it was built), so no stale size can surface. */
	if (!n->nlookup)
		n->flags &= ~FS_NF_KSTALE;
	fs_node_maybe_free_locked(fs, n);
}

void fs_node_release_open_locked(struct fs_ctx *fs, struct fs_node *n)
{
	if (n->nopen)
		n->nopen--;
	fs_node_maybe_free_locked(fs, n);
}

struct fs_img_extra *fs_node_extra_locked(struct fs_node *n)
{
	if (!n->u.img)
		n->u.img = calloc(1, sizeof(*n->u.img));
	return n->u.img;
}

void fs_node_extra_trim_locked(struct fs_node *n)
{
	struct fs_img_extra *x = n->u.img;
	if (x && !x->meta && !x->creator && !x->filename && !x->variants_raw && !x->w &&
	    !x->fail) {
		free(x);
		n->u.img = NULL;
	}
}

int fs_node_in_images(const struct fs_node *n)
{
	for (; n; n = n->parent)
		if (n->ino == FS_INO_IMAGES)
			return 1;
	return 0;
}

/* Joins the names from `top` (exclusive) down to n with '/'. */
static char *join_path(const struct fs_node *n, const struct fs_node *top)
{
	size_t len = 0;
	const struct fs_node *p;
	for (p = n; p && p != top; p = p->parent)
		len += strlen(p->name) + 1;
	if (p != top)
		return NULL;
	char *s = malloc(len ? len : 1);
	if (!s)
		return NULL;
	s[len ? len - 1 : 0] = '\0';
	size_t end = len ? len - 1 : 0;
	for (p = n; p != top; p = p->parent) {
		size_t l = strlen(p->name);
		end -= l;
		memcpy(s + end, p->name, l);
		if (end)
			s[--end] = '/';
	}
	return s;
}

char *fs_node_id_locked(struct fs_ctx *fs, struct fs_node *n)
{
	return join_path(n, fs->fixed[FS_INO_IMAGES]);
}

char *fs_node_path_locked(struct fs_ctx *fs, struct fs_node *n)
{
	return join_path(n, fs->fixed[FS_INO_ROOT]);
}

int fs_name_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 255 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	return strchr(name, '/') == NULL;
}

static mode_t node_mode(struct fs_ctx *fs, const struct fs_node *n)
{
	mode_t wr = fs->cfg.ro ? 0 : 0200;
	switch (n->kind) {
	case FS_K_ROOT:
	case FS_K_RENDROOT:
		return S_IFDIR | 0555;
	case FS_K_DIR:
	case FS_K_VARDIR:
	case FS_K_KEYDIR:
		return S_IFDIR | ((0555 | wr) & ~fs->umask);
	case FS_K_IMG:
	case FS_K_VAR:
		return S_IFREG | ((0444 | wr) & ~fs->umask);
	case FS_K_KEY:
		return S_IFREG | (fs->cfg.ro ? 0400 : 0600); /* secrets: umask cannot widen */
	case FS_K_CTLDIR:
		return S_IFDIR | 0555;
	case FS_K_CTL:
		return n->u.ctl_mode;
	default:
		return S_IFREG | 0444;
	}
}

void fs_node_attr_locked(struct fs_ctx *fs, const struct fs_node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = node_mode(fs, n);
	st->st_nlink = is_dir_kind(n->kind) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)n->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	int64_t ms = n->uploaded_ms ? n->uploaded_ms : fs->mount_ms;
	st->st_ctim.tv_sec = ms / 1000;
	st->st_ctim.tv_nsec = (ms % 1000) * 1000000;
	st->st_mtim = st->st_ctim;
	if (n->kind == FS_K_IMG && (n->flags & FS_NF_MTIME)) { /* fs_times.c */
		int64_t sec = n->mtime_ns / 1000000000, nsec = n->mtime_ns % 1000000000;
		if (nsec < 0) {
			nsec += 1000000000;
			sec--;
		}
		st->st_mtim.tv_sec = (time_t)sec;
		st->st_mtim.tv_nsec = (long)nsec;
	}
	st->st_atim = st->st_mtim;
}

/*
 * What the kernel may cache of a name from the images listing: no longer than the listing
 * stays fresh, so once it is older than dir_ttl the kernel asks again and the name is
 * re-checked (fs_img_recheck) before anything answers from the table. Files and
 * directories made here and not uploaded yet are the table's own.
 */
double fs_node_entry_timeout_locked(struct fs_ctx *fs, const struct fs_node *n)
{
	if ((n->kind != FS_K_IMG && n->kind != FS_K_DIR) || n->ino == FS_INO_IMAGES)
		return fs->ttl;
	if ((n->kind == FS_K_IMG && (n->flags & FS_NF_PENDING)) ||
	    (n->kind == FS_K_DIR && (n->flags & FS_NF_LOCALDIR)))
		return fs->ttl;
	double left = fs_listing_left_locked(fs, &fs->images);
	return left < fs->ttl ? left : fs->ttl;
}

double fs_node_attr_timeout_locked(struct fs_ctx *fs, const struct fs_node *n)
{
	switch (n->kind) {
	case FS_K_IMG:
		/* Unknown size: 0 so the kernel asks again once the blob is cached. Being
		 * written: the size changes under the kernel. */
		return (n->flags & FS_NF_SIZE) && !(n->u.img && n->u.img->w) ? fs_node_entry_timeout_locked(fs, n)
									     : 0;
	case FS_K_STATS:
	case FS_K_CTL:
		return 0;
	case FS_K_DIR:
		return fs_node_entry_timeout_locked(fs, n);
	default:
		return fs->ttl;
	}
}

/*
 * Readdirplus (ls -l) gives images of unknown size the full timeout too: with 0, every
 * stat(2) of a listing would be a GETATTR round trip. The kernel then caches size 0 for
 * them; the caller marks such nodes FS_NF_KSTALE and the open that learns the size
 * invalidates the kernel's attributes before replying (fs_images.c), so a read never
 * stops at a cached size 0.
 */
double fs_node_dirplus_timeout_locked(struct fs_ctx *fs, const struct fs_node *n)
{
	if (n->kind == FS_K_IMG)
		return n->u.img && n->u.img->w ? 0 : fs_node_entry_timeout_locked(fs, n);
	return fs_node_attr_timeout_locked(fs, n);
}

void fs_node_entry_locked(struct fs_ctx *fs, struct fs_node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	e->generation = 1;
	fs_node_attr_locked(fs, n, &e->attr);
	e->attr_timeout = fs_node_attr_timeout_locked(fs, n);
	e->entry_timeout = fs_node_entry_timeout_locked(fs, n);
	n->nlookup++;
}

/* ---- open handles ------------------------------------------------------------------ */

void fs_fh_free(struct fs_fh *fh)
{
	if (!fh)
		return;
	if (fh->fd >= 0)
		close(fh->fd);
	if (fh->kind == FS_FH_BUF)
		pthread_mutex_destroy(&fh->buf_lock);
	free(fh->buf);
	free(fh);
}

/* ---- kernel dentry invalidation ---------------------------------------------------- */

void fs_inval_queue_locked(struct fs_ctx *fs, fuse_ino_t parent, const char *name)
{
	if (!fs->inval_running)
		return;
	size_t len = strlen(name);
	struct fs_inval *iv = malloc(sizeof(*iv) + len + 1);
	if (iv) {
		iv->next = NULL;
		iv->parent = parent;
		memcpy(iv->name, name, len + 1);
		*fs->inval_tail = iv;
		fs->inval_tail = &iv->next;
		pthread_cond_signal(&fs->inval_cond);
	}
}

void fs_node_drop_locked(struct fs_ctx *fs, struct fs_node *n)
{
	if (!(n->flags & FS_NF_LINKED))
		return;
	fs_inval_queue_locked(fs, n->parent->ino, n->name);
	fs_node_unlink_locked(fs, n);
}

static void *inval_main(void *arg)
{
	struct fs_ctx *fs = arg;
	pthread_mutex_lock(&fs->lock);
	for (;;) {
		while (!fs->inval_head && !fs->inval_stop)
			pthread_cond_wait(&fs->inval_cond, &fs->lock);
		struct fs_inval *iv = fs->inval_head;
		if (!iv)
			break;
		fs->inval_head = iv->next;
		if (!fs->inval_head)
			fs->inval_tail = &fs->inval_head;
		pthread_mutex_unlock(&fs->lock);
		if (!fs->inval_stop)
			fuse_lowlevel_notify_inval_entry(fs->se, iv->parent, iv->name,
							 strlen(iv->name));
		free(iv);
		pthread_mutex_lock(&fs->lock);
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

int fs_inval_start(struct fs_ctx *fs)
{
	fs->inval_tail = &fs->inval_head;
	pthread_cond_init(&fs->inval_cond, NULL);
	if (pthread_create(&fs->inval_thread, NULL, inval_main, fs) != 0)
		return -EAGAIN;
	fs->inval_running = 1;
	return 0;
}

void fs_inval_stop(struct fs_ctx *fs)
{
	if (!fs->inval_running)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->inval_stop = 1;
	pthread_cond_signal(&fs->inval_cond);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->inval_thread, NULL);
	fs->inval_running = 0;
	pthread_cond_destroy(&fs->inval_cond);
}

int fs_is_scratch_name(const char *name)
{
	return name[0] == '.' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

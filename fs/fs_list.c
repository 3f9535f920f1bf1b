/*
 * fs_list.c - the images listing: one v2 pass builds or refreshes the table.
 *
 * Policy. The listing is trusted for dir_ttl seconds. A refresh walks every page
 * (10,000 images per request) and applies each image to the table as it arrives, stamping
 * it with the listing's generation; at the end, uploaded images the pass did not see are
 * removed, as are sub-directories left empty (unless made or emptied here). Only one
 * listing runs at a time: other threads that need one wait for it (fs->list_cond).
 *
 * Bound. One listing brings at most list_cap_locked() images (the account's allowance plus
 * a margin, from the stats the mount already asked for): a server whose pages never end
 * fails the listing with EIO after a bounded number of pages, and a listing stops at the
 * next page when the session is exiting (unmount, SIGTERM), so neither can hold `ls` or the
 * unmount forever nor grow the daemon without bound.
 *
 * Changes made through this mount update the table directly and stamp the current
 * generation, so a listing in flight does not undo them; an image deleted here while a
 * listing is in flight is remembered as a tombstone so a page fetched before the delete
 * does not bring it back.
 *
 * Freshness of known names. Once the listing is older than dir_ttl, a lookup, getattr,
 * getxattr or open of a name the table knows re-checks it first (fs_img_recheck), and the
 * kernel never caches a listed name longer than the listing stays fresh (fs_node.c), so a
 * change made elsewhere shows within dir_ttl plus one request. A re-check costs either a
 * listing (ceil(images / 10,000) requests, and every name is fresh again) or one GET of
 * that image (only that name). Like renting skis: GETs while they have cost less than
 * one listing since it went stale (fs->rechecks), then a listing, so a burst of checks
 * costs at most twice the cheaper choice in hindsight. An account that fits in one page
 * always lists. An image fetched by GET is not asked again within dir_ttl (a small ring
 * of the last ones: a stat is a lookup and a getattr, and getfattr -d asks per name).
 *
 * Variant URLs. The list gives every image one delivery URL per variant. They almost always
 * follow one account-wide pattern, base + id + "/" + name, so the pattern is kept once and
 * an image stores its own list only when it differs.
 */
#include "fs.h"
#include "journal.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fs_tomb_add_locked(struct fs_ctx *fs, const char *id)
{
	if (!fs->images.busy)
		return;
	size_t len = strlen(id);
	struct fs_tomb *t = malloc(sizeof(*t) + len + 1);
	if (!t)
		return;
	memcpy(t->id, id, len + 1);
	t->next = fs->tombs;
	fs->tombs = t;
}

static int tomb_has_locked(struct fs_ctx *fs, const char *id)
{
	for (struct fs_tomb *t = fs->tombs; t; t = t->next)
		if (strcmp(t->id, id) == 0)
			return 1;
	return 0;
}

/* ---- variant URL pattern -------------------------------------------------------- */

void fs_var_names_add_locked(struct fs_ctx *fs, const char *name)
{
	if (!fs->var_base)
		return;
	for (size_t i = 0; i < fs->n_var_names; i++)
		if (strcmp(fs->var_names[i], name) == 0)
			return;
	char **v = realloc(fs->var_names, (fs->n_var_names + 1) * sizeof(*v));
	if (!v)
		return;
	fs->var_names = v;
	if ((v[fs->n_var_names] = strdup(name)))
		fs->n_var_names++;
}

void fs_var_names_del_locked(struct fs_ctx *fs, const char *name)
{
	for (size_t i = 0; i < fs->n_var_names; i++) {
		if (strcmp(fs->var_names[i], name) == 0) {
			free(fs->var_names[i]);
			memmove(&fs->var_names[i], &fs->var_names[i + 1],
				(fs->n_var_names - i - 1) * sizeof(char *));
			fs->n_var_names--;
			return;
		}
	}
}

/* Learns the pattern from one image: base is everything before "<id>/". */
static void var_learn_locked(struct fs_ctx *fs, const struct api_image *img)
{
	size_t idlen = strlen(img->id);
	if (img->n_variants == 0)
		return;
	const char *u = img->variants[0];
	const char *hit = strstr(u, img->id);
	if (!hit || hit[idlen] != '/')
		return;
	char *base = strndup(u, (size_t)(hit - u));
	char **names = calloc(img->n_variants, sizeof(*names));
	if (!base || !names) {
		free(base);
		free(names);
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < img->n_variants; i++) {
		const char *v = img->variants[i];
		size_t bl = strlen(base);
		if (strncmp(v, base, bl) != 0 || strncmp(v + bl, img->id, idlen) != 0 ||
		    v[bl + idlen] != '/' || !(names[n] = strdup(v + bl + idlen + 1)))
			break;
		n++;
	}
	fs_var_free_locked(fs);
	fs->var_base = base;
	fs->var_names = names;
	fs->n_var_names = n;
}

static int var_matches_locked(struct fs_ctx *fs, const struct api_image *img)
{
	if (!fs->var_base || img->n_variants != fs->n_var_names)
		return 0;
	size_t bl = strlen(fs->var_base), idlen = strlen(img->id);
	for (size_t i = 0; i < img->n_variants; i++) {
		const char *v = img->variants[i];
		if (strncmp(v, fs->var_base, bl) != 0 || strncmp(v + bl, img->id, idlen) != 0 ||
		    v[bl + idlen] != '/' || strcmp(v + bl + idlen + 1, fs->var_names[i]) != 0)
			return 0;
	}
	return 1;
}

static char *var_join(char *const *urls, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(urls[i]) + 1;
	char *s = malloc(len), *p = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(urls[i]);
		memcpy(p, urls[i], l);
		p[l] = '\n';
		p += l + 1;
	}
	*p = '\0';
	return s;
}

char *fs_img_variants_locked(struct fs_ctx *fs, struct fs_node *n)
{
	if (n->flags & FS_NF_VARRAW)
		return strdup(n->u.img && n->u.img->variants_raw ? n->u.img->variants_raw : "");
	char *id = fs_node_id_locked(fs, n);
	if (!id)
		return NULL;
	size_t bl = fs->var_base ? strlen(fs->var_base) : 0, il = strlen(id), len = 1;
	for (size_t i = 0; i < fs->n_var_names; i++)
		len += bl + il + 1 + strlen(fs->var_names[i]) + 1;
	char *s = malloc(len), *p = s;
	if (s) {
		for (size_t i = 0; i < fs->n_var_names; i++) {
			size_t vl = strlen(fs->var_names[i]);
			memcpy(p, fs->var_base, bl);
			memcpy(p + bl, id, il);
			p[bl + il] = '/';
			memcpy(p + bl + il + 1, fs->var_names[i], vl);
			p[bl + il + 1 + vl] = '\n';
			p += bl + il + vl + 2;
		}
		*p = '\0';
	}
	free(id);
	return s;
}

/* ---- applying images ------------------------------------------------------------ */

/* Extensions a filename may add to the name without costing a copy (FS_NF_FNEXT_*). */
static const char *const fn_exts[] = {NULL,   ".png",  ".jpg", ".jpeg",
				      ".gif", ".webp", ".svg", ".avif"};

/* Index in fn_exts of fname = name + extension, or 0. */
static unsigned fn_ext_index(const char *name, const char *fname)
{
	size_t nl = strlen(name);
	if (strncmp(fname, name, nl) != 0)
		return 0;
	for (unsigned i = 1; i < sizeof(fn_exts) / sizeof(fn_exts[0]); i++)
		if (strcmp(fname + nl, fn_exts[i]) == 0)
			return i;
	return 0;
}

char *fs_img_filename_locked(const struct fs_node *n, int *err)
{
	const struct fs_img_extra *x = n->u.img;
	unsigned ext = (n->flags & FS_NF_FNEXT_MASK) >> FS_NF_FNEXT_SHIFT;
	char *s;
	*err = -ENODATA;
	if (n->flags & FS_NF_NOFILENAME)
		return NULL;
	if (x && x->filename) {
		s = strdup(x->filename);
	} else {
		size_t nl = strlen(n->name), el = ext ? strlen(fn_exts[ext]) : 0;
		if ((s = malloc(nl + el + 1))) {
			memcpy(s, n->name, nl);
			memcpy(s + nl, ext ? fn_exts[ext] : "", el + 1);
		}
	}
	if (!s)
		*err = -ENOMEM;
	return s;
}

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src && *src ? strdup(src) : NULL;
}

void fs_img_set_locked(struct fs_ctx *fs, struct fs_node *n, const struct api_image *img)
{
	if (n->uploaded_ms && img->uploaded_ms && n->uploaded_ms != img->uploaded_ms) {
		n->flags &= ~FS_NF_SIZE; /* another version: size unknown again */
		n->size = 0;
		n->flags |= FS_NF_INVAL;
	}
	n->uploaded_ms = img->uploaded_ms;
	n->flags &=
	    ~(FS_NF_PENDING | FS_NF_RSU | FS_NF_NOFILENAME | FS_NF_VARRAW | FS_NF_FNEXT_MASK);
	if (img->require_signed_urls)
		n->flags |= FS_NF_RSU;
	if (!img->filename)
		n->flags |= FS_NF_NOFILENAME;
	unsigned ext = img->filename ? fn_ext_index(n->name, img->filename) : 0;
	int own_fn = img->filename && !ext && strcmp(img->filename, n->name) != 0;
	n->flags |= (uint32_t)(ext << FS_NF_FNEXT_SHIFT);
	/* The first image of each listing may re-learn the pattern (variants changed). */
	if (!fs->var_base ||
	    (fs->images.busy && fs->var_gen != fs->images.gen && !var_matches_locked(fs, img))) {
		var_learn_locked(fs, img);
		fs->var_gen = fs->images.gen;
	}
	int raw = !var_matches_locked(fs, img);
	char *user = NULL; /* the metadata without the stamp (fs_times.c) */
	if (fs_stamp_apply_locked(n, img, &user) < 0)
		return;
	int need = (user && strcmp(user, "{}") != 0) || (img->creator && *img->creator) || raw ||
		   own_fn;
	struct fs_img_extra *x = need || n->u.img ? fs_node_extra_locked(n) : NULL;
	if (!x) {
		free(user);
		return;
	}
	set_str(&x->meta, user && strcmp(user, "{}") ? user : NULL);
	free(user);
	set_str(&x->creator, img->creator);
	set_str(&x->filename, own_fn ? img->filename : NULL);
	free(x->variants_raw);
	x->variants_raw = NULL;
	if (raw) {
		x->variants_raw = var_join(img->variants, img->n_variants);
		n->flags |= FS_NF_VARRAW;
	}
	fs_node_extra_trim_locked(n);
}

/* Walks/creates the directories of id; returns the directory for the last component and
 * sets *base to it, or NULL when the id has no path form here. */
static struct fs_node *id_dir_locked(struct fs_ctx *fs, const char *id, const char **base)
{
	struct fs_node *dir = fs->fixed[FS_INO_IMAGES];
	const char *p = id, *slash;
	char comp[256];

	while ((slash = strchr(p, '/'))) {
		size_t l = (size_t)(slash - p);
		if (l == 0 || l >= sizeof(comp))
			return NULL;
		memcpy(comp, p, l);
		comp[l] = '\0';
		if (!fs_name_valid(comp))
			return NULL;
		struct fs_node *c = fs_node_child_locked(fs, dir, comp);
		if (!c)
			c = fs_node_new_locked(fs, dir, comp, FS_K_DIR);
		if (!c || c->kind != FS_K_DIR)
			return NULL;
		c->gen = fs->images.gen;
		dir = c;
		p = slash + 1;
	}
	if (!fs_name_valid(p))
		return NULL;
	*base = p;
	return dir;
}

struct fs_node *fs_images_apply_locked(struct fs_ctx *fs, const struct api_image *img)
{
	const char *base;
	struct fs_node *dir = id_dir_locked(fs, img->id, &base);
	if (!dir) {
		fs->skipped_ids++;
		return NULL;
	}
	struct fs_node *n = fs_node_child_locked(fs, dir, base);
	if (n && n->kind != FS_K_IMG) {
		fs->skipped_ids++;
		return NULL;
	}
	if (!n) {
		n = fs_node_new_locked(fs, dir, base, FS_K_IMG);
		if (!n)
			return NULL;
	}
	n->gen = fs->images.gen;
	/* Local state wins over the listing while the file is pending or being written. */
	if ((n->flags & (FS_NF_PENDING | FS_NF_WB)) || (n->u.img && n->u.img->w))
		return n;
	fs_img_set_locked(fs, n, img);
	if (!(n->flags & FS_NF_SIZE) || fs->cfg.stamp_off) /* what this host learned */
		fs_local_apply_locked(fs, n, img->id, img->uploaded_ms);
	return n;
}

/* One listing in flight: the callback's state. */
struct list_run {
	struct fs_ctx *fs;
	uint64_t seen, cap;
	int stop; /* why the callback stopped it: LIST_STOP_* */
};
enum { LIST_STOP_CAP = 1, LIST_STOP_EXIT };

/*
 * The most images one listing may bring: the account cannot hold more than `allowed`
 * images (stats from the mount-time account check, refreshed by statfs), plus a margin for
 * a count that moved since. A server whose listing goes past it (a listing that never ends,
 * pages of fresh ids) is not an account we can show: the listing stops with EIO instead of
 * growing the table without bound. The table as a whole is held to the same cap, so failed
 * listings that each bring new ids cannot add up either.
 */
static uint64_t list_cap_locked(const struct fs_ctx *fs)
{
	int64_t a = fs->statfs_cache.allowed, c = fs->statfs_cache.current;
	uint64_t most = (uint64_t)(a > c ? (a > 0 ? a : 0) : (c > 0 ? c : 0));
	uint64_t cap = most + most / 10 + FS_LIST_MARGIN;
	return cap < FS_LIST_CEILING ? cap : FS_LIST_CEILING;
}

static int list_cb(const struct api_image *img, void *arg)
{
	struct list_run *run = arg;
	struct fs_ctx *fs = run->fs;
	if (fs->se && fuse_session_exited(fs->se)) {
		run->stop = LIST_STOP_EXIT; /* unmounting: nobody will read the result */
		return -EIO;
	}
	if (++run->seen > run->cap) {
		run->stop = LIST_STOP_CAP;
		return -EIO;
	}
	if (img->draft)
		return 0;
	pthread_mutex_lock(&fs->lock);
	int full = fs->n_images >= run->cap;
	if (!full && !tomb_has_locked(fs, img->id) && !journal_hides(fs->journal, img->id))
		fs_images_apply_locked(fs, img);
	pthread_mutex_unlock(&fs->lock);
	if (full) {
		run->stop = LIST_STOP_CAP;
		return -EIO;
	}
	return 0;
}

/* Asks for the account's stats again (one request, only after a listing hit the cap), so a
 * long-lived mount whose account grew lists it fully on the next try. */
static void stats_recheck(struct fs_ctx *fs)
{
	struct api_stats st;
	struct api_err err;
	if (api_stats_get(fs->api, &st, &err) < 0)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->statfs_cache = st;
	fs->statfs_ms = fs_now_ms();
	pthread_mutex_unlock(&fs->lock);
}

/* The log line of a listing that failed; returns its -errno. */
static int list_failed(const struct list_run *run, int rc, const struct api_err *err)
{
	if (run->stop == LIST_STOP_CAP) {
		fs_log(FS_LOG_ERR,
		       "listing of 'images' exceeds %llu images, more than the account's "
		       "allowance; giving up",
		       (unsigned long long)run->cap);
		return -EIO;
	}
	if (run->stop == LIST_STOP_EXIT) {
		fs_log(FS_LOG_INFO, "listing of 'images' stopped: unmounting");
		return -EIO;
	}
	return fs_log_api("list", "images", rc, err);
}

/* Post-order sweep: drops unseen uploaded images and empty listed directories. */
static void sweep_locked(struct fs_ctx *fs, struct fs_node *dir, uint32_t gen)
{
	struct fs_node *c = dir->u.first_child, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->kind == FS_K_DIR) {
			sweep_locked(fs, c, gen);
			if (!c->u.first_child && !(c->flags & FS_NF_LOCALDIR))
				fs_node_drop_locked(fs, c);
		} else if (c->kind == FS_K_IMG && c->gen != gen &&
			   !(c->flags & (FS_NF_PENDING | FS_NF_WB)) && !(c->u.img && c->u.img->w)) {
			fs_node_drop_locked(fs, c);
		}
	}
}

int fs_images_refresh(struct fs_ctx *fs, int force)
{
	struct api_err err;
	int requests = 0, rc;

	pthread_mutex_lock(&fs->lock);
	while (fs->images.busy)
		pthread_cond_wait(&fs->list_cond, &fs->lock);
	if (!force && !fs_listing_stale_locked(fs, &fs->images)) {
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	if (fs->images.fail_ms && fs_now_ms() - fs->images.fail_ms < FS_FAIL_HOLD_MS) {
		rc = fs->images.fail_rc; /* the listing that just failed (we may have waited on it) */
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	fs->images.busy = 1;
	fs->images.drops_start = fs->images.drops;
	uint32_t gen = ++fs->images.gen;
	fs->skipped_ids = 0;
	struct list_run run = {.fs = fs, .cap = list_cap_locked(fs)};
	pthread_mutex_unlock(&fs->lock);

	int64_t t0 = fs_now_ms();
	struct api_list_opts opts = {0};
	rc = api_images_list(fs->api, &opts, list_cb, &run, &requests, &err);
	if (run.stop && rc == 0)
		rc = -EIO;
	if (rc < 0)
		rc = list_failed(&run, rc, &err);
	if (run.stop == LIST_STOP_CAP)
		stats_recheck(fs); /* the allowance may have grown since the mount */

	pthread_mutex_lock(&fs->lock);
	if (rc == 0) {
		sweep_locked(fs, fs->fixed[FS_INO_IMAGES], gen);
		fs->images.fresh_ms = fs_now_ms();
		fs->images.fail_ms = 0;
		fs->images.drops_listed = fs->images.drops_start;
		fs->rechecks = 0;
	} else {
		fs->images.fail_ms = fs_now_ms();
		fs->images.fail_rc = rc;
	}
	while (fs->tombs) {
		struct fs_tomb *t = fs->tombs;
		fs->tombs = t->next;
		free(t);
	}
	fs->images.busy = 0;
	uint64_t n = fs->n_images;
	uint32_t skipped = fs->skipped_ids;
	pthread_cond_broadcast(&fs->list_cond);
	pthread_mutex_unlock(&fs->lock);

	/* A page of 10,000 images parses into ~10 MB of short-lived JSON objects: hand the
	 * freed heap back so the daemon's RSS reflects the table, not the last listing. */
	malloc_trim(0);
	if (rc < 0)
		return rc;
	fs_log(FS_LOG_DEBUG, "listed %llu images in %d requests, %lld ms", (unsigned long long)n,
	       requests, (long long)(fs_now_ms() - t0));
	if (skipped)
		fs_log(FS_LOG_WARN,
		       "%u image ids cannot be shown as paths (empty, '.' or '..' "
		       "components, components over 255 bytes, or a file and a directory of the "
		       "same name) and are hidden",
		       skipped);
	return 0;
}

/* ---- freshness ---------------------------------------------------------------- */

#define RECHECK_PER_PAGE 10000 /* images per v2 list request (api_images_list default) */

void fs_img_drop_gone(struct fs_ctx *fs, struct fs_node *n, int64_t version)
{
	pthread_mutex_lock(&fs->lock);
	if ((n->flags & FS_NF_LINKED) && n->uploaded_ms == version && !(n->u.img && n->u.img->w)) {
		struct fs_node *dir = n->parent;
		fs_node_drop_locked(fs, n);
		if (!dir->u.first_child && dir->ino != FS_INO_IMAGES)
			dir->flags |= FS_NF_LOCALDIR;
	}
	pthread_mutex_unlock(&fs->lock);
}

/* One GET of n's image: applies the answer, or drops n when the image is gone. */
static int recheck_get(struct fs_ctx *fs, struct fs_node *n, char *id, char *path,
		       int64_t version)
{
	struct api_image img;
	struct api_err err;
	int rc = api_image_get(fs->api, id, &img, &err);
	if (rc == -ENOENT) {
		fs_img_drop_gone(fs, n, version);
		rc = -ENOENT;
	} else if (rc < 0) {
		fs_log_api("re-check", path, rc, &err);
		pthread_mutex_lock(&fs->lock);
		fs->images.fail_ms = fs_now_ms(); /* as a failed listing: re-checks pause */
		fs->images.fail_rc = rc;
		pthread_mutex_unlock(&fs->lock);
		rc = 0; /* cannot tell: the table answers */
	} else {
		pthread_mutex_lock(&fs->lock);
		if ((n->flags & FS_NF_LINKED) && !(n->flags & FS_NF_PENDING) &&
		    !(n->u.img && n->u.img->w) && !img.draft)
			fs_img_set_locked(fs, n, &img);
		unsigned i = fs->rechecked_next++ % FS_RECHECKED_MAX;
		fs->rechecked[i].ino = n->ino;
		fs->rechecked[i].ms = fs_now_ms();
		pthread_mutex_unlock(&fs->lock);
		api_image_release(&img);
	}
	free(id);
	free(path);
	return rc;
}

/* Whether n is a name from the listing that needs a re-check now. Caller holds fs->lock. */
int fs_img_recheck_due_locked(struct fs_ctx *fs, struct fs_node *n)
{
	if (!(n->flags & FS_NF_LINKED) || n->ino == FS_INO_IMAGES || fs->images.fresh_ms == 0)
		return 0;
	if (n->kind == FS_K_IMG &&
	    ((n->flags & (FS_NF_PENDING | FS_NF_UPLOADING | FS_NF_WB)) || (n->u.img && n->u.img->w)))
		return 0; /* made or being written here: the table is the truth */
	if (n->kind == FS_K_DIR && (n->flags & FS_NF_LOCALDIR))
		return 0;
	if (n->kind != FS_K_IMG && n->kind != FS_K_DIR)
		return 0;
	if (!fs_listing_stale_locked(fs, &fs->images))
		return 0;
	int64_t now = fs_now_ms(), ttl_ms = (int64_t)fs->cfg.dir_ttl * 1000;
	for (unsigned i = 0; i < FS_RECHECKED_MAX; i++)
		if (fs->rechecked[i].ino == n->ino && now - fs->rechecked[i].ms < ttl_ms)
			return 0; /* fetched by GET within dir_ttl (lookup, then getattr) */
	return 1;
}

int fs_img_recheck(struct fs_ctx *fs, struct fs_node *n)
{
	char *id = NULL, *path = NULL;
	pthread_mutex_lock(&fs->lock);
	/* A listing in flight brings every name soon: the table answers rather than queue
	 * behind it, so a cached image stays readable at once while a slow or dead API holds
	 * the listing; after a listing failed, the table answers for dir_ttl (until an ls or
	 * the next re-check lists again) instead of each operation waiting out the network. */
	int64_t ttl_ms = (int64_t)fs->cfg.dir_ttl * 1000;
	if (!fs_img_recheck_due_locked(fs, n) || fs->images.busy ||
	    (fs->images.fail_ms && fs_now_ms() - fs->images.fail_ms < ttl_ms)) {
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	uint64_t pages = fs->n_images / RECHECK_PER_PAGE + 1;
	int by_get = n->kind == FS_K_IMG && fs->rechecks + 1 < pages;
	int64_t version = n->uploaded_ms;
	if (by_get) {
		fs->rechecks++;
		id = fs_node_id_locked(fs, n);
		path = fs_node_path_locked(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
	if (by_get) {
		if (!id || !path) {
			free(id);
			free(path);
			return 0;
		}
		return recheck_get(fs, n, id, path, version);
	}
	if (fs_images_refresh(fs, 0) < 0)
		return 0; /* logged; the last listing answers while the API fails */
	pthread_mutex_lock(&fs->lock);
	int gone = !(n->flags & FS_NF_LINKED);
	pthread_mutex_unlock(&fs->lock);
	return gone ? -ENOENT : 0;
}

/*
 * cache.c - on-disk LRU blob cache: lookups, single-flight fills, adopt, remove, open; the
 * index and eviction they use are in cache_index.c.
 *
 * Policy. Exact LRU over whole blobs with a hard byte cap. Every committed blob is one
 * file; the in-memory index holds (sha256(id), version, size, last-use stamp) per file, in
 * a hash table (bucket chosen by the id hash only, so all versions of an id share a chain
 * and cache_remove is one chain walk) and a doubly linked list from most to least recently
 * used. Before a new blob is renamed into place we evict from the old end until
 * bytes + new <= max_bytes, so committed bytes never exceed the cap; at most the blobs
 * being filled in tmp/ are on disk on top of it. A blob bigger than the cap (or any blob
 * when max_bytes is 0) is served from its unlinked temp file and never committed.
 *
 * Layout (see cache_disk.c): <dir>/v1/objects/<ss>/<sha256hex(id)>-<version>-<size>, with
 * version and size as 16 hex digits each; temp and staged files in <dir>/v1/tmp. Names come
 * only from hashes, so ids cannot escape <dir>. The size in the name is the committed size:
 * the index knows it, so a lookup by (id, version) builds the name without a directory scan.
 *
 * Persistence. The last-use stamp is also the file's mtime, set explicitly with futimens
 * to a strictly increasing nanosecond value (max(now, last + 1)) on commit and on every hit
 * that changes the order, so cache_open rebuilds the same LRU order by sorting on mtime.
 * cache_open is O(n log n) in entries: one fstatat per file, then a qsort.
 *
 * Crash safety. The bytes are a copy of data that lives on the server: losing an entry
 * costs a re-download, serving a truncated one is never acceptable. So completeness is
 * verified, not forced to disk: a blob becomes an entry only by rename(2) of a complete
 * temp file (fill wrote tmp/fill-<random> and returned 0, or the caller staged and adopted
 * it), named with the size the file had at that moment. There is no fsync (unless
 * IMAGESFS_CACHE_FSYNC=1 was set at cache_open), and the directory is not fsync'd either.
 *  - kill -9 (or any crash of the process alone): written data is in the page cache and
 *    survives; rename is atomic. Entries are complete; fills in flight leave files in tmp/,
 *    which cache_open deletes, so garbage never grows.
 *  - Power loss or kernel crash: recently committed entries may be missing (the rename did
 *    not reach the journal), or present with fewer bytes than their name says (delayed
 *    allocation: the rename was journaled before the data was written back; ext4 in its
 *    default data=ordered mode and XFS then show a zero-length or short file). cache_open
 *    deletes every entry whose st_size differs from the size in its name, and a hit
 *    re-checks with fstat, so such a file is never served; the next read fills it again.
 *    Recent LRU stamps may also be lost, which only changes the eviction order.
 *  - Not covered: a filesystem that can journal a file's new size before its data (ext4
 *    data=writeback, or no ordering at all) could leave a right-sized file holding zeros or
 *    stale blocks after a power loss. Run with IMAGESFS_CACHE_FSYNC=1 there.
 * A zero-length entry is valid: completeness of what was written is the fill callback's
 * job (it returns 0 only once the whole blob is written). Entries named in the older format
 * "<hash>-<version>" were fsync'd before their rename, so cache_open migrates them (one
 * rename each, keeping their mtime) instead of dropping them; if a key ends up with two
 * files the most recently used one is kept.
 *
 * Locking and costs. One mutex (c->lock) guards the index, the fill list and the stats.
 * It is never held during a fill (or the optional fsync). It is held for a few metadata
 * syscalls: a hit does openat + fstat + futimens; a commit does one unlinkat per victim +
 * futimens + renameat. Without the fsync a fill costs what writing the blob into the page
 * cache costs and a commit a few metadata operations; writeback happens later, in the
 * background. Concurrent misses on one key share one struct cache_fill: the first caller
 * fills, the others wait on its condition variable and get an independent fd on the same
 * file (reopened through /proc/self/fd, so it works even when the blob was not kept).
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUCKETS_INITIAL 1024

/* Opens e's file read-only and makes e the most recently used entry. On -ENOENT (someone
 * deleted the file behind our back, or changed its size: it is deleted then) e is dropped
 * from the index and freed. */
static int entry_open_locked(struct cache *c, struct cache_entry *e, int *fd_out,
			     uint64_t *size_out)
{
	char name[CACHE_NAME_LEN + 1];
	struct stat st;
	int fd, err;

	cache_disk_name(e->idh, e->version, e->size, name);
	fd = openat(c->objects_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		err = -errno;
		cache_warn("cannot open cache entry '%s': %s", name, strerror(-err));
		if (fd >= 0)
			close(fd);
		if (err == -ENOENT) {
			cache_index_unlink_locked(c, e);
			free(e);
		}
		return err;
	}
	if ((uint64_t)st.st_size != e->size) {
		cache_warn("cache entry '%s' has %lld bytes, committed %llu: dropping it", name,
			   (long long)st.st_size, (unsigned long long)e->size);
		close(fd);
		cache_entry_delete_locked(c, e);
		return -ENOENT;
	}
	if (e != c->mru) {
		cache_lru_unlink_locked(c, e);
		cache_lru_push_mru_locked(c, e);
		e->stamp = cache_next_stamp_locked(c);
		if ((err = cache_disk_stamp(fd, e->stamp)) < 0)
			cache_warn("cannot touch cache entry '%s': %s", name, strerror(-err));
	}
	*fd_out = fd;
	if (size_out)
		*size_out = e->size;
	return 0;
}

/*
 * Moves the complete temp file tmp/<tmp_name> (open as fd, `size` bytes) into
 * objects/ as (idh, version), evicting first. When the blob is not to be kept (too big,
 * removed meanwhile, or the rename fails) the temp file is unlinked instead; the caller's
 * fds on it keep working, so serving never depends on keeping.
 */
static void commit_locked(struct cache *c, const uint8_t idh[CACHE_SHA256_LEN], int64_t version,
			  const char *tmp_name, int fd, uint64_t size, bool keep)
{
	char name[CACHE_NAME_LEN + 1];
	struct cache_entry *e = NULL, *old;
	int err;

	if (keep && c->max_bytes > 0 && size + c->pinned_bytes <= c->max_bytes)
		e = calloc(1, sizeof(*e));
	if (!e) {
		unlinkat(c->tmp_fd, tmp_name, 0);
		return;
	}
	memcpy(e->idh, idh, CACHE_SHA256_LEN);
	e->version = version;
	e->size = size;
	if ((old = cache_index_find_locked(c, idh, version)) != NULL)
		cache_entry_delete_locked(c, old); /* e.g. adopt and fill raced; newest wins */
	cache_evict_locked(c, size);
	e->stamp = cache_next_stamp_locked(c);
	if ((err = cache_disk_stamp(fd, e->stamp)) < 0)
		cache_warn("cannot stamp temp file '%s': %s", tmp_name, strerror(-err));
	cache_disk_name(idh, version, size, name);
	if (renameat(c->tmp_fd, tmp_name, c->objects_fd, name) < 0) {
		cache_warn("cannot commit cache entry '%s': %s", name, strerror(errno));
		unlinkat(c->tmp_fd, tmp_name, 0);
		free(e);
		return;
	}
	cache_index_insert_locked(c, e);
}

static int check_key(const struct cache *c, const char *id)
{
	return c && id ? 0 : -EINVAL;
}

int cache_lookup(struct cache *c, const char *id, int64_t version, int *fd_out, uint64_t *size_out)
{
	uint8_t idh[CACHE_SHA256_LEN];
	struct cache_entry *e;
	int err = -ENOENT;

	if (check_key(c, id) < 0 || !fd_out)
		return -EINVAL;
	cache_sha256(id, strlen(id), idh);
	pthread_mutex_lock(&c->lock);
	if ((e = cache_index_find_locked(c, idh, version)) != NULL)
		err = entry_open_locked(c, e, fd_out, size_out);
	if (err == 0)
		c->st.hits++;
	else if (err == -ENOENT)
		c->st.misses++;
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* Creates the temp file and runs fill (and fsync if c->sync). On success returns a read-only
 * fd on the temp file in *rfd and leaves the O_RDWR fd in *wfd; on failure nothing is left. */
static int fill_to_tmp(struct cache *c, cache_fill_fn fill, void *arg,
		       char tmp_name[CACHE_TMP_NAME_MAX], int *wfd, int *rfd, uint64_t *size)
{
	struct stat st;
	int fd, err;

	if ((err = cache_disk_tmp_create(c, CACHE_FILL_PREFIX, tmp_name, &fd)) < 0)
		return err;
	err = fill(fd, arg);
	if (err > 0)
		err = -EIO; /* not the contract, but never let it look like success */
	if (err == 0 && c->sync && fsync(fd) < 0)
		err = -errno;
	if (err == 0 && fstat(fd, &st) < 0)
		err = -errno;
	if (err == 0) {
		*rfd = openat(c->tmp_fd, tmp_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (*rfd < 0)
			err = -errno;
	}
	if (err < 0) {
		close(fd);
		unlinkat(c->tmp_fd, tmp_name, 0);
		return err;
	}
	*wfd = fd;
	*size = (uint64_t)st.st_size;
	return 0;
}

static struct cache_fill *fill_find_locked(struct cache *c, const uint8_t idh[CACHE_SHA256_LEN],
					   int64_t version)
{
	struct cache_fill *f;

	for (f = c->fills; f; f = f->next)
		if (f->version == version && memcmp(f->idh, idh, CACHE_SHA256_LEN) == 0)
			return f;
	return NULL;
}

static void fill_unlist_locked(struct cache *c, struct cache_fill *f)
{
	struct cache_fill **pp = &c->fills;

	while (*pp != f)
		pp = &(*pp)->next;
	*pp = f->next;
}

/* Hands a finished fill's result to one of its holders. */
static int fill_result_locked(struct cache_fill *f, int *fd_out, uint64_t *size_out)
{
	int fd;

	if (f->err < 0)
		return f->err;
	if (f->refs == 1) {
		fd = f->fd; /* the last holder takes the fd itself */
		f->fd = -1;
	} else if ((fd = cache_disk_reopen(f->fd)) < 0) {
		cache_warn("cannot reopen filled blob: %s", strerror(-fd));
		return fd;
	}
	*fd_out = fd;
	if (size_out)
		*size_out = f->size;
	return 0;
}

static void fill_put_locked(struct cache_fill *f)
{
	if (--f->refs > 0)
		return;
	if (f->fd >= 0)
		close(f->fd);
	pthread_cond_destroy(&f->done_cv);
	free(f);
}

/* Waits for another thread's fill of the same key and shares its result. */
static int fill_wait_locked(struct cache *c, struct cache_fill *f, int *fd_out, uint64_t *size_out)
{
	int err;

	f->refs++;
	while (!f->done)
		pthread_cond_wait(&f->done_cv, &c->lock);
	err = fill_result_locked(f, fd_out, size_out);
	fill_put_locked(f);
	return err;
}

/* Runs the fill for f (registered in c->fills, one reference held) and publishes it. */
static int fill_run(struct cache *c, struct cache_fill *f, cache_fill_fn fill, void *arg,
		    int *fd_out, uint64_t *size_out)
{
	char tmp_name[CACHE_TMP_NAME_MAX];
	int wfd = -1, rfd = -1, err;
	uint64_t size = 0;

	err = fill_to_tmp(c, fill, arg, tmp_name, &wfd, &rfd, &size);
	pthread_mutex_lock(&c->lock);
	if (err == 0)
		commit_locked(c, f->idh, f->version, tmp_name, wfd, size, !f->removed);
	f->err = err;
	f->fd = rfd;
	f->size = size;
	f->done = true;
	fill_unlist_locked(c, f);
	pthread_cond_broadcast(&f->done_cv);
	err = fill_result_locked(f, fd_out, size_out);
	fill_put_locked(f);
	pthread_mutex_unlock(&c->lock);
	if (wfd >= 0)
		close(wfd);
	return err;
}

int cache_get(struct cache *c, const char *id, int64_t version, cache_fill_fn fill, void *arg,
	      int *fd_out, uint64_t *size_out)
{
	uint8_t idh[CACHE_SHA256_LEN];
	struct cache_entry *e;
	struct cache_fill *f;
	int err;

	if (check_key(c, id) < 0 || !fill || !fd_out)
		return -EINVAL;
	cache_sha256(id, strlen(id), idh);
	pthread_mutex_lock(&c->lock);
	if ((e = cache_index_find_locked(c, idh, version)) != NULL) {
		err = entry_open_locked(c, e, fd_out, size_out);
		if (err == 0)
			c->st.hits++;
		if (err != -ENOENT) {
			pthread_mutex_unlock(&c->lock);
			return err;
		}
	}
	c->st.misses++;
	if ((f = fill_find_locked(c, idh, version)) != NULL) {
		err = fill_wait_locked(c, f, fd_out, size_out);
		pthread_mutex_unlock(&c->lock);
		return err;
	}
	if (!(f = calloc(1, sizeof(*f))) || pthread_cond_init(&f->done_cv, NULL) != 0) {
		pthread_mutex_unlock(&c->lock);
		free(f);
		return -ENOMEM;
	}
	memcpy(f->idh, idh, CACHE_SHA256_LEN);
	f->version = version;
	f->refs = 1;
	f->fd = -1;
	f->next = c->fills;
	c->fills = f;
	c->st.fills++;
	pthread_mutex_unlock(&c->lock);
	return fill_run(c, f, fill, arg, fd_out, size_out);
}

int cache_stage_open(struct cache *c, int *fd_out, char **path_out)
{
	char name[CACHE_TMP_NAME_MAX];
	size_t len;
	char *path;
	int fd, err;

	if (!c || !fd_out || !path_out)
		return -EINVAL;
	if ((err = cache_disk_tmp_create(c, CACHE_STAGE_PREFIX, name, &fd)) < 0)
		return err;
	len = strlen(c->tmp_path) + 1 + strlen(name) + 1;
	if (!(path = malloc(len))) {
		close(fd);
		unlinkat(c->tmp_fd, name, 0);
		return -ENOMEM;
	}
	snprintf(path, len, "%s/%s", c->tmp_path, name);
	*fd_out = fd;
	*path_out = path;
	return 0;
}

/* Returns the file name of staged_path inside tmp/, or NULL if it is not a path that
 * cache_stage_open can have returned. */
const char *cache_staged_name(const struct cache *c, const char *staged_path)
{
	size_t n = strlen(c->tmp_path), plen = sizeof(CACHE_STAGE_PREFIX "-") - 1;
	const char *base;

	if (strncmp(staged_path, c->tmp_path, n) != 0 || staged_path[n] != '/')
		return NULL;
	base = staged_path + n + 1;
	if (strncmp(base, CACHE_STAGE_PREFIX "-", plen) != 0 || strchr(base, '/') ||
	    strlen(base) >= CACHE_TMP_NAME_MAX)
		return NULL;
	return base;
}

int cache_adopt(struct cache *c, const char *id, int64_t version, const char *staged_path)
{
	uint8_t idh[CACHE_SHA256_LEN];
	const char *base;
	struct stat st;
	int fd, err = 0;

	if (check_key(c, id) < 0 || !staged_path)
		return -EINVAL;
	if (!(base = cache_staged_name(c, staged_path))) {
		/* Not ours: never unlink a path we did not create. */
		cache_warn("refusing to adopt '%s': not a staged file of this cache", staged_path);
		return -EINVAL;
	}
	fd = openat(c->tmp_fd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		err = -errno;
	else if (!S_ISREG(st.st_mode))
		err = -EINVAL;
	else if (c->sync && fsync(fd) < 0)
		err = -errno;
	if (err < 0) {
		cache_warn("cannot adopt staged file '%s': %s", staged_path, strerror(-err));
		if (fd >= 0)
			close(fd);
		unlinkat(c->tmp_fd, base, 0);
		return err;
	}
	cache_sha256(id, strlen(id), idh);
	pthread_mutex_lock(&c->lock);
	commit_locked(c, idh, version, base, fd, (uint64_t)st.st_size, true);
	pthread_mutex_unlock(&c->lock);
	close(fd);
	return 0;
}

int cache_remove(struct cache *c, const char *id)
{
	uint8_t idh[CACHE_SHA256_LEN];
	struct cache_fill *f;

	if (check_key(c, id) < 0)
		return -EINVAL;
	cache_sha256(id, strlen(id), idh);
	pthread_mutex_lock(&c->lock);
	cache_index_delete_id_locked(c, idh);
	for (f = c->fills; f; f = f->next)
		if (memcmp(f->idh, idh, CACHE_SHA256_LEN) == 0)
			f->removed = true; /* served to its waiters, then dropped */
	pthread_mutex_unlock(&c->lock);
	return 0;
}

void cache_stats_get(struct cache *c, struct cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->st;
	out->pinned_bytes = c->pinned_bytes;
	out->pinned = c->pinned;
	pthread_mutex_unlock(&c->lock);
	out->max_bytes = c->max_bytes;
}

/* Loads the scanned entries (oldest first) and evicts down to a possibly smaller cap. */
static int index_load(struct cache *c)
{
	struct cache_entry **arr;
	size_t n, i;
	int err;

	if ((err = cache_disk_scan(c, &arr, &n)) < 0)
		return err;
	c->nbuckets = BUCKETS_INITIAL;
	while (c->nbuckets < n)
		c->nbuckets *= 2;
	if (!(c->buckets = calloc(c->nbuckets, sizeof(*c->buckets)))) {
		for (i = 0; i < n; i++)
			free(arr[i]);
		free(arr);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < n; i++) {
		struct cache_entry *dup = cache_index_find_locked(c, arr[i]->idh, arr[i]->version);

		/* Two sizes of one key (a crash between unlink and rename, or a migrated name):
		 * the most recently used wins. The names differ, so this unlinks only dup. */
		if (dup)
			cache_entry_delete_locked(c, dup);
		cache_index_insert_locked(c, arr[i]);
		if (arr[i]->stamp > c->last_stamp)
			c->last_stamp = arr[i]->stamp;
	}
	free(arr);
	cache_evict_locked(c, 0);
	while (c->max_bytes == 0 && c->lru) { /* "keep nothing" includes empty blobs */
		cache_entry_delete_locked(c, c->lru);
		c->st.evictions++;
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int cache_open(const struct cache_config *cfg, struct cache **out)
{
	struct cache *c;
	const char *env;
	int err;

	if (!cfg || !cfg->dir || !*cfg->dir || !out)
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	if ((err = pthread_mutex_init(&c->lock, NULL)) != 0) {
		free(c);
		return -err;
	}
	c->max_bytes = cfg->max_bytes;
	env = getenv(CACHE_FSYNC_ENV);
	c->sync = env && strcmp(env, "1") == 0;
	if ((err = cache_disk_open(c, cfg->dir)) < 0 || (err = cache_pin_scan(c)) < 0 ||
	    (err = index_load(c)) < 0) {
		cache_close(c);
		return err;
	}
	*out = c;
	return 0;
}

void cache_close(struct cache *c)
{
	struct cache_entry *e, *next;

	if (!c)
		return;
	for (e = c->mru; e; e = next) {
		next = e->older;
		free(e);
	}
	free(c->buckets);
	cache_disk_close(c);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

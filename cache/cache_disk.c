/*
 * cache_disk.c - the cache's on-disk layout: directories, names, temp files, the scan that
 * rebuilds the index at open. The policy (LRU, cap, single-flight) lives in cache.c.
 *
 *	<dir>/v1/lock                 flock'ed while a process has the cache open
 *	<dir>/v1/objects/<ss>/<H>-<V>-<S>
 *	                              one committed blob; H = sha256(id) in hex, ss = H[0..1],
 *	                              V = version as 16 hex digits (two's complement),
 *	                              S = the blob's size in bytes as 16 hex digits
 *	<dir>/v1/tmp/fill-<R>         a blob being filled (R = 64 random bits in hex)
 *	<dir>/v1/tmp/stage-<R>        a file staged by the caller for cache_adopt
 *
 * Directories are 0700 and files 0600, set with fchmod so the umask does not matter.
 * Names are derived only from hashes, so no id can name a path outside objects/.
 *
 * The size in the name is what was committed; the scan at open deletes every entry whose
 * file has another size (a power loss before writeback, see cache.c). Entries named by the
 * older "<H>-<V>" format were fsync'd before their rename, so their size on disk is the
 * committed one: the scan renames them to "<H>-<V>-<S>" and keeps them.
 */
#include "cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_MODE 0700
#define FILE_MODE 0600
#define SCAN_INITIAL 1024

void cache_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("imagesfs: cache: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_val(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1; /* upper case is never written, so it is garbage */
}

static bool hex_decode(const char *s, size_t n, uint8_t *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

void cache_disk_name(const uint8_t idh[CACHE_SHA256_LEN], int64_t version, uint64_t size,
		     char out[CACHE_NAME_LEN + 1])
{
	char hex[CACHE_HEX_LEN + 1];

	hex_encode(idh, CACHE_SHA256_LEN, hex);
	snprintf(out, CACHE_NAME_LEN + 1, "%.2s/%s-%016" PRIx64 "-%016" PRIx64, hex, hex,
		 (uint64_t)version, size);
}

static bool parse_u64(const char *s, uint64_t *out)
{
	uint8_t v[8];
	uint64_t u = 0;
	int i;

	if (!hex_decode(s, sizeof(v), v))
		return false;
	for (i = 0; i < 8; i++)
		u = u << 8 | v[i];
	*out = u;
	return true;
}

enum name_kind { NAME_STRAY, NAME_CURRENT, NAME_OLD };

/* Parses "<H>-<V>-<S>" (or the old "<H>-<V>", size left 0) found in shard directory
 * `shard`; NAME_STRAY for anything we did not write. */
static enum name_kind parse_file_name(const char *name, unsigned shard, struct cache_entry *e)
{
	size_t len = strlen(name);
	uint64_t u;

	if ((len != CACHE_FILE_LEN && len != CACHE_OLD_FILE_LEN) || name[CACHE_HEX_LEN] != '-')
		return NAME_STRAY;
	if (!hex_decode(name, CACHE_SHA256_LEN, e->idh) || e->idh[0] != shard)
		return NAME_STRAY;
	if (!parse_u64(name + CACHE_HEX_LEN + 1, &u))
		return NAME_STRAY;
	e->version = (int64_t)u;
	e->size = 0;
	if (len == CACHE_OLD_FILE_LEN)
		return NAME_OLD;
	if (name[CACHE_OLD_FILE_LEN] != '-' || !parse_u64(name + CACHE_OLD_FILE_LEN + 1, &e->size))
		return NAME_STRAY;
	return NAME_CURRENT;
}

/* mkdir -p; components we create get DIR_MODE exactly. */
static int mkdir_p(const char *dir)
{
	char *p = strdup(dir), *s;
	int err = 0;

	if (!p)
		return -ENOMEM;
	for (s = p + 1;; s++) {
		char saved = *s;

		if (saved != '/' && saved != '\0')
			continue;
		*s = '\0';
		if (mkdir(p, DIR_MODE) == 0) {
			if (chmod(p, DIR_MODE) < 0)
				err = -errno;
		} else if (errno != EEXIST) {
			err = -errno;
		}
		*s = saved;
		if (err || saved == '\0')
			break;
	}
	if (err)
		cache_warn("cannot create cache directory '%s': %s", p, strerror(-err));
	free(p);
	return err;
}

/* Opens (creating 0700 if missing) the directory `name` under dirfd. */
static int open_subdir(int dirfd, const char *name, const char *what)
{
	int fd, err;

	if (mkdirat(dirfd, name, DIR_MODE) < 0 && errno != EEXIST)
		goto fail;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		goto fail;
	if (fchmod(fd, DIR_MODE) < 0) {
		err = -errno;
		close(fd);
		cache_warn("cannot chmod cache directory '%s': %s", what, strerror(-err));
		return err;
	}
	return fd;
fail:
	err = -errno;
	cache_warn("cannot open cache directory '%s': %s", what, strerror(-err));
	return err;
}

static int make_shards(int objects_fd)
{
	char name[8]; /* "%02x" of a shard number */
	unsigned i;

	for (i = 0; i < 256; i++) {
		snprintf(name, sizeof(name), "%02x", i);
		if (mkdirat(objects_fd, name, DIR_MODE) == 0) {
			if (fchmodat(objects_fd, name, DIR_MODE, 0) < 0)
				return -errno;
		} else if (errno != EEXIST) {
			return -errno;
		}
	}
	return 0;
}

/* Leftovers of a crash (or of a caller that never adopted its staged file) are garbage:
 * only this process uses tmp/ (the lock file guarantees it), so everything there goes. */
static void clean_tmp(int tmp_fd)
{
	int fd = fcntl(tmp_fd, F_DUPFD_CLOEXEC, 0);
	struct dirent *d;
	DIR *dir;

	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		cache_warn("cannot list cache tmp directory: %s", strerror(errno));
		return;
	}
	while ((d = readdir(dir)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (unlinkat(tmp_fd, d->d_name, 0) < 0 && errno != EISDIR && errno != ENOENT)
			cache_warn("cannot remove leftover temp file '%s': %s", d->d_name,
				   strerror(errno));
	}
	closedir(dir);
}

static int lock_dir(struct cache *c, int v1_fd)
{
	c->lock_fd = openat(v1_fd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, FILE_MODE);
	if (c->lock_fd < 0 || fchmod(c->lock_fd, FILE_MODE) < 0) {
		int err = -errno;

		cache_warn("cannot open cache lock file: %s", strerror(-err));
		return err;
	}
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;

		cache_warn("cache directory is in use by another cache_open: %s", strerror(-err));
		return err;
	}
	return 0;
}

int cache_disk_open(struct cache *c, const char *dir)
{
	int dfd = -1, v1 = -1, err;
	size_t len = strlen(dir) + sizeof("/v1/tmp");

	c->objects_fd = c->tmp_fd = c->lock_fd = c->pin_fd = -1;
	if (!(c->tmp_path = malloc(len)))
		return -ENOMEM;
	snprintf(c->tmp_path, len, "%s/v1/tmp", dir);
	if ((err = mkdir_p(dir)) < 0)
		return err;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		err = -errno;
		cache_warn("cannot open cache directory '%s': %s", dir, strerror(-err));
		return err;
	}
	v1 = err = open_subdir(dfd, "v1", "v1");
	if (err >= 0 && (err = lock_dir(c, v1)) == 0)
		c->objects_fd = err = open_subdir(v1, "objects", "v1/objects");
	if (err >= 0)
		c->tmp_fd = err = open_subdir(v1, "tmp", "v1/tmp");
	if (err >= 0)
		c->pin_fd = err = open_subdir(v1, "pin", "v1/pin");
	if (err >= 0 && (err = make_shards(c->objects_fd)) < 0)
		cache_warn("cannot create cache shard directories: %s", strerror(-err));
	if (err >= 0) {
		clean_tmp(c->tmp_fd);
		err = 0;
	}
	if (v1 >= 0)
		close(v1);
	close(dfd);
	return err;
}

void cache_disk_close(struct cache *c)
{
	if (c->objects_fd >= 0)
		close(c->objects_fd);
	if (c->tmp_fd >= 0)
		close(c->tmp_fd);
	if (c->pin_fd >= 0)
		close(c->pin_fd);
	if (c->lock_fd >= 0)
		close(c->lock_fd); /* releases the flock */
	free(c->tmp_path);
}

static int push_entry(struct cache_entry ***arr, size_t *n, size_t *cap, struct cache_entry *e)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : SCAN_INITIAL;
		struct cache_entry **na = realloc(*arr, ncap * sizeof(*na));

		if (!na)
			return -ENOMEM;
		*arr = na, *cap = ncap;
	}
	(*arr)[(*n)++] = e;
	return 0;
}

/* Unlinks shard/name, logging why first (unless why is NULL: the caller logged). */
static void remove_file(int shard_fd, unsigned shard, const char *name, const char *why)
{
	if (why)
		cache_warn("removing %s '%02x/%s'", why, shard, name);
	if (unlinkat(shard_fd, name, 0) < 0 && errno != ENOENT)
		cache_warn("cannot remove '%02x/%s': %s", shard, name, strerror(errno));
}

/* Renames each old-format entry of `old` (size = its size on disk) to the current format
 * and moves it to arr; frees the ones that cannot be migrated. Runs after the readdir, so
 * a renamed file is never read back as a second entry. */
static int migrate_old(int shard_fd, unsigned shard, struct cache_entry **old, size_t n_old,
		       struct cache_entry ***arr, size_t *n, size_t *cap)
{
	char oname[CACHE_NAME_LEN + 1], nname[CACHE_NAME_LEN + 1];
	struct stat st;
	size_t i;
	int err = 0;

	for (i = 0; i < n_old; i++) {
		struct cache_entry *e = old[i];

		cache_disk_name(e->idh, e->version, e->size, nname);
		memcpy(oname, nname + 3, CACHE_OLD_FILE_LEN); /* "<H>-<V>" of the same key */
		oname[CACHE_OLD_FILE_LEN] = '\0';
		if (err == 0 && fstatat(shard_fd, nname + 3, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			remove_file(shard_fd, shard, oname, "old-format duplicate of an entry");
		} else if (err == 0 && renameat(shard_fd, oname, shard_fd, nname + 3) == 0) {
			if ((err = push_entry(arr, n, cap, e)) == 0)
				continue;
		} else if (err == 0) {
			cache_warn("cannot migrate cache entry '%02x/%s', removing it: %s", shard,
				   oname, strerror(errno));
			remove_file(shard_fd, shard, oname, NULL);
		}
		free(e);
	}
	return err;
}

/* Reads one shard. Removes anything that is not a well-named regular file, and entries whose
 * size on disk is not the committed size in their name (never to be served). */
static int scan_shard(int shard_fd, unsigned shard, struct cache_entry ***arr, size_t *n,
		      size_t *cap)
{
	int fd = fcntl(shard_fd, F_DUPFD_CLOEXEC, 0), err = 0;
	struct cache_entry *e = NULL, **old = NULL;
	size_t n_old = 0, cap_old = 0;
	enum name_kind kind;
	struct dirent *d;
	struct stat st;
	DIR *dir;

	if (fd < 0 || !(dir = fdopendir(fd))) {
		err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	while (err == 0 && (d = readdir(dir)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (!e && !(e = calloc(1, sizeof(*e)))) {
			err = -ENOMEM;
			break;
		}
		kind = parse_file_name(d->d_name, shard, e);
		if (kind == NAME_STRAY ||
		    fstatat(shard_fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode)) {
			remove_file(shard_fd, shard, d->d_name, "stray file");
			continue;
		}
		if (kind == NAME_CURRENT && (uint64_t)st.st_size != e->size) {
			cache_warn("removing entry '%02x/%s': %lld bytes on disk, %llu committed",
				   shard, d->d_name, (long long)st.st_size,
				   (unsigned long long)e->size);
			remove_file(shard_fd, shard, d->d_name, NULL);
			continue;
		}
		e->size = (uint64_t)st.st_size;
		e->stamp = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		if (kind == NAME_OLD)
			err = push_entry(&old, &n_old, &cap_old, e);
		else
			err = push_entry(arr, n, cap, e);
		if (err == 0)
			e = NULL;
	}
	free(e);
	closedir(dir);
	if (n_old > 0) {
		int merr = migrate_old(shard_fd, shard, old, n_old, arr, n, cap);

		if (err == 0)
			err = merr;
	}
	free(old);
	return err;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct cache_entry *x = *(struct cache_entry *const *)a;
	const struct cache_entry *y = *(struct cache_entry *const *)b;
	int r;

	if (x->stamp != y->stamp)
		return x->stamp < y->stamp ? -1 : 1;
	r = memcmp(x->idh, y->idh, sizeof(x->idh));
	if (r)
		return r;
	return x->version < y->version ? -1 : x->version > y->version;
}

int cache_disk_scan(struct cache *c, struct cache_entry ***out, size_t *n_out)
{
	struct cache_entry **arr = NULL;
	size_t n = 0, cap = 0, i;
	char name[8]; /* "%02x" of a shard number */
	unsigned s;
	int err = 0;

	for (s = 0; s < 256 && err == 0; s++) {
		int fd;

		snprintf(name, sizeof(name), "%02x", s);
		fd = openat(c->objects_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			err = -errno;
			break;
		}
		err = scan_shard(fd, s, &arr, &n, &cap);
		close(fd);
	}
	if (err) {
		cache_warn("cannot scan cache shard '%s': %s", name, strerror(-err));
		for (i = 0; i < n; i++)
			free(arr[i]);
		free(arr);
		return err;
	}
	if (n > 1)
		qsort(arr, n, sizeof(*arr), entry_cmp);
	*out = arr;
	*n_out = n;
	return 0;
}

int cache_disk_tmp_create(struct cache *c, const char *prefix, char name_out[CACHE_TMP_NAME_MAX],
			  int *fd_out)
{
	int tries, fd = -1, err;
	uint64_t r;

	for (tries = 0; tries < 8; tries++) {
		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			return errno ? -errno : -EIO;
		snprintf(name_out, CACHE_TMP_NAME_MAX, "%s-%016" PRIx64, prefix, r);
		fd = openat(c->tmp_fd, name_out, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    FILE_MODE);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0 || fchmod(fd, FILE_MODE) < 0) {
		err = -errno;
		cache_warn("cannot create temp file in '%s': %s", c->tmp_path, strerror(-err));
		if (fd >= 0) {
			close(fd);
			unlinkat(c->tmp_fd, name_out, 0);
		}
		return err;
	}
	*fd_out = fd;
	return 0;
}

int cache_disk_reopen(int fd)
{
	char p[64];
	int nfd;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	nfd = open(p, O_RDONLY | O_CLOEXEC);
	if (nfd >= 0)
		return nfd;
	/* No /proc: a dup shares the file offset with other waiters; pread is unaffected. */
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return nfd >= 0 ? nfd : -errno;
}

int cache_disk_stamp(int fd, int64_t stamp)
{
	struct timespec ts[2];

	ts[0].tv_sec = stamp / 1000000000;
	ts[0].tv_nsec = stamp % 1000000000;
	ts[1] = ts[0];
	return futimens(fd, ts) < 0 ? -errno : 0;
}

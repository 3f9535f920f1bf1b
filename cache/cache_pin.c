/*
 * cache_pin.c - pinned blobs: durable private copies the cache never evicts.
 *
 * A pin is one file <dir>/v1/pin/<name>. It is written as pin/.tmp-<name>, fsync'd,
 * renamed to its name and the directory fsync'd (git's lockfile pattern), so a pin either
 * exists whole or not at all, also after a power loss. Pinned bytes are counted with the
 * committed bytes when the cache evicts (cache_index.c), so they never count as
 * free space. cache_open (cache_pin_scan) counts the pins and deletes leftover .tmp- files;
 * it never deletes a pin: only its owner (the journal) knows whether it is still needed.
 *
 * Moving a staged file into a pin and a pin into the cache as a blob: cache_pin_move.c.
 */
#include "cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIN_NAME_MAX 64
#define PIN_TMP_PREFIX ".tmp-"

int cache_pin_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > PIN_NAME_MAX || name[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

static int copy_all(int src, int dst, uint64_t *size)
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
		if (write(dst, buf, (size_t)r) != r) {
			rc = errno ? -errno : -EIO;
			break;
		}
		off += r;
	}
	free(buf);
	*size = (uint64_t)off;
	return rc;
}

uint64_t cache_pin_size_at(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return (uint64_t)st.st_size;
}

/* Forgets a pin's bytes from the counters; called after it left pin/. */
void cache_pin_uncount(struct cache *c, uint64_t size)
{
	pthread_mutex_lock(&c->lock);
	c->pinned_bytes -= size <= c->pinned_bytes ? size : c->pinned_bytes;
	if (c->pinned)
		c->pinned--;
	pthread_mutex_unlock(&c->lock);
}

/* Counts a pin that just took its name (replacing one of `old` bytes when it existed). */
void cache_pin_count(struct cache *c, int existed, uint64_t old, uint64_t size)
{
	pthread_mutex_lock(&c->lock);
	if (existed) {
		c->pinned_bytes -= old <= c->pinned_bytes ? old : c->pinned_bytes;
		c->pinned--;
	}
	c->pinned_bytes += size;
	c->pinned++;
	cache_evict_locked(c, 0); /* make room under the cap; a pin is never a candidate */
	pthread_mutex_unlock(&c->lock);
}

int cache_pin(struct cache *c, const char *name, int src_fd, uint64_t *size_out)
{
	char tmp[sizeof(PIN_TMP_PREFIX) + PIN_NAME_MAX];
	uint64_t size = 0, old;
	int fd, rc;

	if (!cache_pin_name_ok(name))
		return -EINVAL;
	snprintf(tmp, sizeof(tmp), PIN_TMP_PREFIX "%s", name);
	fd = openat(c->pin_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	rc = copy_all(src_fd, fd, &size);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	old = cache_pin_size_at(c->pin_fd, name);
	int existed = faccessat(c->pin_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	if (rc == 0 && renameat(c->pin_fd, tmp, c->pin_fd, name) < 0)
		rc = -errno;
	if (rc == 0 && fsync(c->pin_fd) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(c->pin_fd, tmp, 0);
		cache_warn("cannot pin '%s': %s", name, strerror(-rc));
		return rc;
	}
	cache_pin_count(c, existed, old, size);
	if (size_out)
		*size_out = size;
	return 0;
}

int cache_pin_open(struct cache *c, const char *name, int *fd_out)
{
	if (!cache_pin_name_ok(name))
		return -EINVAL;
	int fd = openat(c->pin_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	*fd_out = fd;
	return 0;
}

int cache_unpin(struct cache *c, const char *name)
{
	if (!cache_pin_name_ok(name))
		return -EINVAL;
	uint64_t size = cache_pin_size_at(c->pin_fd, name);
	if (unlinkat(c->pin_fd, name, 0) < 0)
		return errno == ENOENT ? 0 : -errno;
	cache_pin_uncount(c, size);
	return 0;
}

static int fsync_parent(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int cache_pin_export(struct cache *c, const char *name, const char *dest_path)
{
	if (!cache_pin_name_ok(name))
		return -EINVAL;
	uint64_t size = cache_pin_size_at(c->pin_fd, name);
	int rc = 0;
	if (renameat(c->pin_fd, name, AT_FDCWD, dest_path) < 0) {
		if (errno != EXDEV)
			return -errno;
		int src = -1, dst;
		uint64_t got;
		if ((rc = cache_pin_open(c, name, &src)) < 0)
			return rc;
		dst = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (dst < 0) {
			rc = -errno;
			close(src);
			return rc;
		}
		rc = copy_all(src, dst, &got);
		if (rc == 0 && fsync(dst) < 0)
			rc = -errno;
		close(src);
		close(dst);
		if (rc < 0) {
			unlink(dest_path);
			return rc;
		}
		unlinkat(c->pin_fd, name, 0);
	}
	fsync_parent(dest_path);
	fsync(c->pin_fd);
	cache_pin_uncount(c, size);
	return 0;
}

/* Visits pin/ entries; leftover temp files are deleted when `sweep`. */
static int pin_walk(struct cache *c, int sweep, int (*cb)(const char *, uint64_t, void *),
		    void *arg)
{
	int fd = openat(c->pin_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d))) {
		if (!strncmp(de->d_name, PIN_TMP_PREFIX, strlen(PIN_TMP_PREFIX))) {
			if (sweep)
				unlinkat(c->pin_fd, de->d_name, 0);
			continue;
		}
		if (!cache_pin_name_ok(de->d_name))
			continue;
		rc = cb(de->d_name, cache_pin_size_at(c->pin_fd, de->d_name), arg);
	}
	closedir(d);
	return rc;
}

static int count_cb(const char *name, uint64_t size, void *arg)
{
	struct cache *c = arg;
	c->pinned_bytes += size;
	c->pinned++;
	return 0;
}

int cache_pin_scan(struct cache *c)
{
	c->pinned_bytes = c->pinned = 0;
	return pin_walk(c, 1, count_cb, c);
}

int cache_pin_list(struct cache *c, int (*cb)(const char *name, uint64_t size, void *arg),
		   void *arg)
{
	return pin_walk(c, 0, cb, arg);
}

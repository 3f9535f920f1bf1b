/*
 * cache_pin_move.c - bytes moved by rename, never copied, between the cache's three places:
 * cache_pin_adopt takes a staged file (tmp/) as a pin, without fsync, for bytes whose
 * durable copy is elsewhere (the journal's write-back log, journal/journal_log.c);
 * cache_pin_commit moves a pin into the cache as the blob of a version (cache_adopt), so a
 * stored upload is read back without a copy. Builds on cache.c and cache_pin.c.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cache_pin_adopt(struct cache *c, const char *name, const char *staged_path)
{
	const char *base = staged_path ? cache_staged_name(c, staged_path) : NULL;
	struct stat st;
	if (!cache_pin_name_ok(name) || !base)
		return -EINVAL;
	if (fstatat(c->tmp_fd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	uint64_t old = cache_pin_size_at(c->pin_fd, name);
	int existed = faccessat(c->pin_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat(c->tmp_fd, base, c->pin_fd, name) < 0)
		return -errno;
	cache_pin_count(c, existed, old, (uint64_t)st.st_size);
	return 0;
}

int cache_pin_commit(struct cache *c, const char *name, const char *id, int64_t version)
{
	static unsigned long counter; /* names are unique under the cache's exclusive lock */
	char base[CACHE_TMP_NAME_MAX], *path;
	if (!cache_pin_name_ok(name))
		return -EINVAL;
	uint64_t size = cache_pin_size_at(c->pin_fd, name);
	pthread_mutex_lock(&c->lock);
	unsigned long k = ++counter;
	pthread_mutex_unlock(&c->lock);
	snprintf(base, sizeof(base), CACHE_STAGE_PREFIX "-p%015lx", k);
	size_t len = strlen(c->tmp_path) + 1 + strlen(base) + 1;
	if (!(path = malloc(len)))
		return -ENOMEM;
	snprintf(path, len, "%s/%s", c->tmp_path, base);
	int rc = renameat(c->pin_fd, name, c->tmp_fd, base) < 0 ? -errno : 0;
	if (rc == 0) {
		cache_pin_uncount(c, size);
		cache_adopt(c, id, version, path); /* owns the file now, even on failure */
	}
	free(path);
	return rc;
}

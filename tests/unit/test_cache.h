/*
 * test_cache.h - the fixture and helpers shared by the files of the test_cache program:
 * test_cache.c (fills, lookups, the cap, removal; main), test_cache_disk.c (what a cache
 * finds on disk when it opens, names, modes, adopt) and test_cache_bench.c (--bench mode).
 */
#ifndef IMAGESFS_TEST_CACHE_H
#define IMAGESFS_TEST_CACHE_H

#include <check.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"

#define BLOB 1000

extern char base[64];	 /* mkdtemp root; the cache lives in base/cache */
extern char dir[256];	 /* base/cache */
extern char tmpdir[320]; /* base/cache/v1/tmp */

/* The checked fixture: a fresh base (and the names above), then all of it removed. */
void setup(void);
void teardown(void);
/* cache_open of dir with cap max; asserts it succeeds. */
struct cache *open_cache(uint64_t max);

/* Fill callback: writes `len` bytes of `byte` (or `data`), optionally slowly or failing. */
struct fill {
	const char *data; /* if NULL, len copies of byte */
	size_t len;
	char byte;
	int delay_ms;
	int result; /* returned after writing */
	atomic_int calls;
	atomic_int inside; /* fills running now */
	atomic_int max_inside;
	int rendezvous; /* if > 0, wait (bounded) until this many fills run at once */
};
int fill_cb(int fd, void *arg);
void fill_init(struct fill *f, char byte, size_t len);

/* Reads the whole fd with read(2) (so offsets must be independent) and checks it. */
void check_fd(int fd, char byte, size_t len);
/* cache_get of (id, v) filled with len bytes of byte; checks what it serves. */
void get_blob(struct cache *c, const char *id, int64_t v, char byte, size_t len);
/* cache_lookup of (id, v): false on a miss, else checks what it serves. */
bool lookup_ok(struct cache *c, const char *id, int64_t v, char byte, size_t len);
/* Regular files under dir/v1/sub (their total size in *bytes when not NULL). */
uint64_t disk_files(const char *sub, uint64_t *bytes);
/* The entries on disk take at most max bytes. */
void check_cap(uint64_t max);
struct cache_stats stats(struct cache *c);

/* test_cache_disk.c: the "disk" test case. */
TCase *test_cache_disk_tcase(void);
/* test_cache_bench.c: `test_cache --bench DIR`. */
int test_cache_bench(const char *where);

#endif

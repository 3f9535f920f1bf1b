/*
 * cache_int.h - internals shared by cache.c (lookups, single-flight fills), cache_index.c
 * (index, LRU, eviction), cache_disk.c (on-disk layout) and cache_pin.c (pins). Not part of
 * the contract; only the cache and its unit test include it.
 */
#ifndef IMAGESFS_CACHE_INT_H
#define IMAGESFS_CACHE_INT_H

#include "cache.h"
#include "cache_sha256.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entry name relative to objects/:
 * "<2 hex shard>/<64 hex sha256(id)>-<16 hex version>-<16 hex committed size>". Names of
 * the older format, without the size, are migrated by the scan at open (cache_disk.c). */
#define CACHE_HEX_LEN (2 * CACHE_SHA256_LEN)
#define CACHE_FILE_LEN (CACHE_HEX_LEN + 1 + 16 + 1 + 16)
#define CACHE_OLD_FILE_LEN (CACHE_HEX_LEN + 1 + 16)
#define CACHE_NAME_LEN (2 + 1 + CACHE_FILE_LEN)
/* Set to 1 in the environment at cache_open: fsync every blob before its rename again. */
#define CACHE_FSYNC_ENV "IMAGESFS_CACHE_FSYNC"
/* Temp file name in tmp/: "<prefix>-<16 hex random>"; prefixes are "fill" and "stage". */
#define CACHE_TMP_NAME_MAX 32
#define CACHE_STAGE_PREFIX "stage"
#define CACHE_FILL_PREFIX "fill"

/* One committed blob: 80 bytes, so 100k entries cost about 8 MB of index. */
struct cache_entry {
	uint8_t idh[CACHE_SHA256_LEN]; /* sha256(id) */
	int64_t version;
	uint64_t size;
	int64_t stamp;			   /* last use, ns since the epoch; also the file's mtime */
	struct cache_entry *hnext;	   /* hash chain; bucket chosen by idh only */
	struct cache_entry *newer, *older; /* LRU list */
};

/* One fill in progress; waiters for the same key share it. Freed by the last reference. */
struct cache_fill {
	uint8_t idh[CACHE_SHA256_LEN];
	int64_t version;
	struct cache_fill *next; /* guarded by c->lock */
	pthread_cond_t done_cv;	 /* signalled once, with c->lock, when done turns true */
	int refs;		 /* guarded by c->lock: filler + waiters */
	bool done;		 /* guarded by c->lock */
	bool removed;		 /* guarded by c->lock: cache_remove ran meanwhile, do not keep */
	int err;		 /* set before done: 0 or -errno */
	int fd;			 /* set before done: O_RDONLY on the result, closed at refs 0 */
	uint64_t size;		 /* set before done */
};

struct cache {
	/* Immutable after cache_open. */
	uint64_t max_bytes;
	char *tmp_path; /* absolute-or-as-given "<dir>/v1/tmp" */
	int objects_fd; /* O_DIRECTORY on <dir>/v1/objects */
	int tmp_fd;	/* O_DIRECTORY on <dir>/v1/tmp */
	int lock_fd;	/* <dir>/v1/lock, flock'ed exclusively while open */
	int pin_fd;	/* O_DIRECTORY on <dir>/v1/pin (cache_pin.c) */
	bool sync;	/* CACHE_FSYNC_ENV was 1: fsync before every commit */

	pthread_mutex_t lock;
	struct cache_entry **buckets; /* guarded by c->lock */
	size_t nbuckets;	      /* guarded by c->lock; a power of two */
	struct cache_entry *mru;      /* guarded by c->lock: newest end of the LRU list */
	struct cache_entry *lru;      /* guarded by c->lock: oldest end, evicted first */
	struct cache_fill *fills;     /* guarded by c->lock */
	int64_t last_stamp;	      /* guarded by c->lock: stamps strictly increase */
	struct cache_stats st;	      /* guarded by c->lock */
	uint64_t pinned_bytes;	      /* guarded by c->lock: bytes of pin/ (cache_pin.c) */
	uint64_t pinned;	      /* guarded by c->lock: files in pin/ */
};

/* cache_disk.c */
void cache_disk_name(const uint8_t idh[CACHE_SHA256_LEN], int64_t version, uint64_t size,
		     char out[CACHE_NAME_LEN + 1]);
int cache_disk_open(struct cache *c, const char *dir);
void cache_disk_close(struct cache *c);
/* Reads objects/ into a malloc'd array of malloc'd entries sorted oldest first. Deletes
 * files whose size differs from the size in their name; migrates old-format names. */
int cache_disk_scan(struct cache *c, struct cache_entry ***out, size_t *n_out);
/* Creates tmp/<prefix>-<random> O_RDWR, mode 0600; name_out gets the file name. */
int cache_disk_tmp_create(struct cache *c, const char *prefix, char name_out[CACHE_TMP_NAME_MAX],
			  int *fd_out);
/* A new open file description, O_RDONLY, on the file behind fd (works if unlinked). */
int cache_disk_reopen(int fd);
/* Sets the file's atime and mtime to stamp ns (so LRU order survives a remount). */
int cache_disk_stamp(int fd, int64_t stamp);
/* cache.c: the file name of staged_path inside tmp/, or NULL if it is not a path that
 * cache_stage_open can have returned. */
const char *cache_staged_name(const struct cache *c, const char *staged_path);
/* cache_pin.c: counts pin/ at open (before the index is loaded, so eviction sees it). */
int cache_pin_scan(struct cache *c);
/* cache_pin.c, for cache_pin_move.c: a valid pin name; the size of pin `name` in dirfd (0:
 * none); the counters after a pin left pin/ (uncount) or took its name, replacing one of
 * `old` bytes when it existed (count; evicts to make room). */
int cache_pin_name_ok(const char *name);
uint64_t cache_pin_size_at(int dirfd, const char *name);
void cache_pin_uncount(struct cache *c, uint64_t size);
void cache_pin_count(struct cache *c, int existed, uint64_t old, uint64_t size);
/* cache_index.c; every function needs c->lock held. */
/* A strictly increasing last-use stamp: max(now, last + 1) ns since the epoch. */
int64_t cache_next_stamp_locked(struct cache *c);
void cache_lru_unlink_locked(struct cache *c, struct cache_entry *e);
void cache_lru_push_mru_locked(struct cache *c, struct cache_entry *e);
struct cache_entry *cache_index_find_locked(struct cache *c, const uint8_t idh[CACHE_SHA256_LEN],
					    int64_t version);
/* Adds e as the most recently used entry (and to the entry and byte counts). */
void cache_index_insert_locked(struct cache *c, struct cache_entry *e);
/* Takes e out of the table, the LRU list and the counts; does not free it. */
void cache_index_unlink_locked(struct cache *c, struct cache_entry *e);
/* Drops e from the index, unlinks its file (open fds on it keep working) and frees it. */
void cache_entry_delete_locked(struct cache *c, struct cache_entry *e);
/* Deletes every version of the id hashed to idh. */
void cache_index_delete_id_locked(struct cache *c, const uint8_t idh[CACHE_SHA256_LEN]);
/* Evicts LRU entries until `need` more bytes fit beside committed and pinned ones. */
void cache_evict_locked(struct cache *c, uint64_t need);
void cache_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

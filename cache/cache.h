/*
 * cache.h - on-disk LRU blob cache, hard-capped in bytes, persistent across mounts.
 *
 * Entries are keyed by (id, version): the version is the image's `uploaded` time in ms,
 * so a deleted and re-uploaded id never returns the old bytes. No FUSE, no curl here.
 *
 * Every function returns 0 or a negative errno. Thread-safe: one struct cache may be used
 * by any number of threads at once.
 */
#ifndef IMAGESFS_CACHE_H
#define IMAGESFS_CACHE_H

#include <stdint.h>
#include <sys/types.h>

struct cache;

struct cache_config {
	const char *dir;    /* created 0700 if missing */
	uint64_t max_bytes; /* hard cap on the bytes of committed blobs */
};

/* Creates the layout under cfg->dir (parents too, 0700), deletes leftover temp files and
 * evicts down to max_bytes. Entries whose file size is not the size they were committed
 * with (cut short by a power loss) are deleted. IMAGESFS_CACHE_FSYNC=1 in the environment
 * makes this cache fsync every blob before committing it. One cache_open per dir at a time:
 * -EBUSY while another (any process) holds it. -EINVAL for a NULL or empty dir. */
int cache_open(const struct cache_config *cfg, struct cache **out);
/* No other call on c may be in progress. NULL is a no-op. */
void cache_close(struct cache *c);

/* Fills fd (a temp file the cache created, opened O_RDWR, offset 0) with the blob.
 * Returns 0 or -errno; on failure the cache discards the temp file. Return 0 only once the
 * whole blob is written: the file's size at that point is what gets cached (a positive
 * return is treated as -EIO). */
typedef int (*cache_fill_fn)(int fd, void *arg);

/* Returns a read-only fd on the blob of (id, version) and its size, marking it most
 * recently used. On a miss, calls fill exactly once even if many threads ask for the same
 * (id, version) at once (the others wait and share the result); the filled temp file is
 * renamed into place (not fsync'd: see "Crash safety" in cache.c), evicting
 * least-recently-used blobs first so the total never exceeds max_bytes. A blob larger
 * than max_bytes is still returned (from an unlinked temp file) but not kept. The caller
 * closes *fd_out; size_out may be NULL. Waiters get the filler's error, or their own
 * independent fd. */
int cache_get(struct cache *c, const char *id, int64_t version, cache_fill_fn fill, void *arg,
	      int *fd_out, uint64_t *size_out);

/* Like cache_get without fill: -ENOENT on a miss (also while a fill is in progress). */
int cache_lookup(struct cache *c, const char *id, int64_t version, int *fd_out,
		 uint64_t *size_out);

/* Makes a private staging file in the cache's tmp directory (same filesystem as the
 * entries) for data the caller writes (e.g. a file being uploaded). *path_out is malloc'd.
 * A staged file never adopted may be unlinked by the caller; the next cache_open deletes it. */
int cache_stage_open(struct cache *c, int *fd_out, char **path_out);

/* Moves a staged file into the cache as (id, version) (rename, no copy). Takes ownership of
 * the staged file even on failure (it is removed then). Evicts as cache_get does; a file
 * larger than max_bytes is removed and 0 returned. staged_path must be a path returned by
 * cache_stage_open: anything else gets -EINVAL and is left untouched. */
int cache_adopt(struct cache *c, const char *id, int64_t version, const char *staged_path);

/* Removes every version of id (0 even if none was cached). Open fds keep working; a fill
 * of id in progress still serves its callers but is not kept. */
int cache_remove(struct cache *c, const char *id);

struct cache_stats {
	uint64_t bytes;   /* committed bytes */
	uint64_t entries;
	/* misses include callers that waited on another's fill; fills counts fill calls;
	 * evictions counts blobs dropped for the cap (not cache_remove). */
	uint64_t hits, misses, fills, evictions;
	uint64_t pinned_bytes, pinned; /* bytes and files held by cache_pin */
	uint64_t max_bytes;	       /* the cap (cache_config.max_bytes) */
};
void cache_stats_get(struct cache *c, struct cache_stats *out);

/* ---- pinned blobs (cache_pin.c) ---------------------------------------------------
 * A pin is a durable private copy of some bytes, kept in <dir>/v1/pin/<name> until
 * cache_unpin: never evicted, never deleted by cache_open, and counted against max_bytes
 * (eviction makes room for it; it is not free space). The intent journal pins the bytes it
 * needs to undo a destructive step. Names are [A-Za-z0-9._-], 1..64 chars, not starting
 * with '.' (else -EINVAL). */

/* Copies src_fd (from offset 0, with pread) into pin/<name>, then fsyncs the file and the
 * pin directory: on return 0 the bytes survive a power loss. Replaces an existing pin of
 * that name. *size_out (nullable) receives the byte count. On failure nothing is left. */
int cache_pin(struct cache *c, const char *name, int src_fd, uint64_t *size_out);
/* Moves a staged file (a path from cache_stage_open) into pin/<name> by rename, without
 * fsync: for bytes made durable elsewhere (the journal's write-back log, which re-creates
 * the pin after a crash). Counted and kept like any pin; replaces a pin of that name. On
 * success the staged path is gone; on failure it is left to the caller. */
int cache_pin_adopt(struct cache *c, const char *name, const char *staged_path);
/* Moves pin/<name> into the cache as the blob of (id, version), by rename (no copy); the
 * pin is gone on success (also when the cache could not keep the blob). */
int cache_pin_commit(struct cache *c, const char *name, const char *id, int64_t version);
/* Read-only fd on a pin (the caller closes it); -ENOENT if there is none. */
int cache_pin_open(struct cache *c, const char *name, int *fd_out);
/* Removes a pin (0 if there was none). */
int cache_unpin(struct cache *c, const char *name);
/* Moves a pin out of the cache to dest_path (same filesystem: rename; else copy), fsyncing
 * dest's directory; the pin is gone on success. */
int cache_pin_export(struct cache *c, const char *name, const char *dest_path);
/* Calls cb for every pin (name, size); a non-zero return stops and is returned. */
int cache_pin_list(struct cache *c, int (*cb)(const char *name, uint64_t size, void *arg),
		   void *arg);

#endif

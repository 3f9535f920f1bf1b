/*
 * cache_index.c - the cache's in-memory index: a hash table of committed entries (bucket
 * chosen by sha256(id) only, so all versions of an id share one chain), the LRU list from
 * most to least recently used, and eviction from its old end. Every function needs c->lock
 * held. The policy and its costs are described in cache.c, which builds fills, lookups and
 * open on this; cache_pin.c evicts through it to make room for a pin.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static size_t bucket_of(const struct cache *c, const uint8_t idh[CACHE_SHA256_LEN])
{
	uint64_t h;

	memcpy(&h, idh, sizeof(h)); /* sha256 output is already uniform */
	return (size_t)(h & (c->nbuckets - 1));
}

int64_t cache_next_stamp_locked(struct cache *c)
{
	struct timespec ts;
	int64_t t;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	if (t <= c->last_stamp)
		t = c->last_stamp + 1;
	c->last_stamp = t;
	return t;
}

void cache_lru_unlink_locked(struct cache *c, struct cache_entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->mru = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->lru = e->newer;
	e->newer = e->older = NULL;
}

void cache_lru_push_mru_locked(struct cache *c, struct cache_entry *e)
{
	e->newer = NULL;
	e->older = c->mru;
	if (c->mru)
		c->mru->newer = e;
	else
		c->lru = e;
	c->mru = e;
}

struct cache_entry *cache_index_find_locked(struct cache *c, const uint8_t idh[CACHE_SHA256_LEN],
					    int64_t version)
{
	struct cache_entry *e;

	for (e = c->buckets[bucket_of(c, idh)]; e; e = e->hnext)
		if (e->version == version && memcmp(e->idh, idh, CACHE_SHA256_LEN) == 0)
			return e;
	return NULL;
}

/* Doubles the table; on ENOMEM keeps the old one (chains just get longer). */
static void index_grow_locked(struct cache *c)
{
	size_t old_n = c->nbuckets, i;
	struct cache_entry **old = c->buckets, **nb = calloc(old_n * 2, sizeof(*nb));

	if (!nb)
		return;
	c->buckets = nb;
	c->nbuckets = old_n * 2;
	for (i = 0; i < old_n; i++) {
		struct cache_entry *e = old[i], *next;

		for (; e; e = next) {
			size_t b = bucket_of(c, e->idh);

			next = e->hnext;
			e->hnext = nb[b];
			nb[b] = e;
		}
	}
	free(old);
}

/* Adds e as the most recently used entry. */
void cache_index_insert_locked(struct cache *c, struct cache_entry *e)
{
	size_t b;

	if (c->st.entries >= c->nbuckets)
		index_grow_locked(c);
	b = bucket_of(c, e->idh);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	cache_lru_push_mru_locked(c, e);
	c->st.entries++;
	c->st.bytes += e->size;
}

void cache_index_unlink_locked(struct cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[bucket_of(c, e->idh)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	cache_lru_unlink_locked(c, e);
	c->st.entries--;
	c->st.bytes -= e->size;
}

/* Drops e from the index and unlinks its file; open fds on it keep working. */
void cache_entry_delete_locked(struct cache *c, struct cache_entry *e)
{
	char name[CACHE_NAME_LEN + 1];

	cache_disk_name(e->idh, e->version, e->size, name);
	cache_index_unlink_locked(c, e);
	if (unlinkat(c->objects_fd, name, 0) < 0 && errno != ENOENT)
		cache_warn("cannot remove cache entry '%s': %s", name, strerror(errno));
	free(e);
}

void cache_index_delete_id_locked(struct cache *c, const uint8_t idh[CACHE_SHA256_LEN])
{
	struct cache_entry *e, *next;

	for (e = c->buckets[bucket_of(c, idh)]; e; e = next) {
		next = e->hnext;
		if (memcmp(e->idh, idh, CACHE_SHA256_LEN) == 0)
			cache_entry_delete_locked(c, e);
	}
}

/* Evicts least recently used entries until `need` more bytes fit under the cap. */
void cache_evict_locked(struct cache *c, uint64_t need)
{
	while (c->lru && c->st.bytes + c->pinned_bytes + need > c->max_bytes) {
		cache_entry_delete_locked(c, c->lru);
		c->st.evictions++;
	}
}

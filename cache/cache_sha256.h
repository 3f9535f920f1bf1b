/*
 * cache_sha256.h - SHA-256 (FIPS 180-4), internal to the cache.
 *
 * The cache names files by the hash of the image id, so no id can ever shape a path.
 * No crypto library is linked, hence this small implementation. Not constant-time;
 * it hashes public ids, never secrets.
 */
#ifndef IMAGESFS_CACHE_SHA256_H
#define IMAGESFS_CACHE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define CACHE_SHA256_LEN 32

struct cache_sha256 {
	uint32_t h[8];
	uint64_t total; /* bytes hashed so far */
	uint8_t buf[64];
	size_t used; /* bytes pending in buf */
};

void cache_sha256_init(struct cache_sha256 *s);
void cache_sha256_update(struct cache_sha256 *s, const void *data, size_t len);
void cache_sha256_final(struct cache_sha256 *s, uint8_t out[CACHE_SHA256_LEN]);

/* One-shot helper. */
void cache_sha256(const void *data, size_t len, uint8_t out[CACHE_SHA256_LEN]);

#endif

/*
 * fs_fresh.c - how fresh a listing is: the monotonic clock, the one rule that says when the
 * images, variants or keys listing is stale (never listed, older than dir_ttl, or dropped by
 * .imagesfs/refresh or SIGHUP), how long it stays fresh, and the drops themselves.
 *
 * What a listing brings is trusted until it is stale; fs_list.c (images) and fs_special.c
 * (variants, keys) list again then, and the table caps what the kernel may cache of a listed
 * name by what is left (fs_node.c). Every _locked function needs fs->lock.
 */
#include "fs.h"

#include <time.h>

int64_t fs_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fs_listings_drop_locked(struct fs_ctx *fs, int mask)
{
	if (mask & FS_DROP_IMAGES)
		fs->images.drops++;
	if (mask & FS_DROP_VARIANTS)
		fs->variants.drops++;
	if (mask & FS_DROP_KEYS)
		fs->keys.drops++;
	fs->statfs_ms = 0;
}

int fs_listing_stale_locked(struct fs_ctx *fs, struct fs_listing *l)
{
	/* SIGHUP since the last look: refresh everything (a load first: this runs per request) */
	if (atomic_load_explicit(&fs->hup, memory_order_relaxed) && atomic_exchange(&fs->hup, 0))
		fs_listings_drop_locked(fs, FS_DROP_ALL);
	return l->fresh_ms == 0 || l->drops != l->drops_listed ||
	       fs_now_ms() - l->fresh_ms >= (int64_t)fs->cfg.dir_ttl * 1000;
}

double fs_listing_left_locked(struct fs_ctx *fs, const struct fs_listing *l)
{
	if (l->fresh_ms == 0 || l->drops != l->drops_listed)
		return 0;
	int64_t left = (int64_t)fs->cfg.dir_ttl * 1000 - (fs_now_ms() - l->fresh_ms);
	return left > 0 ? (double)left / 1000.0 : 0;
}

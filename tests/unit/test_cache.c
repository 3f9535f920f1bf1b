/*
 * Unit tests for cache/: the on-disk LRU blob cache (cache.h), plus its SHA-256.
 * Every test works in its own mkdtemp directory and walks it to check what is on disk.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cache_sha256.h"

#define BLOB 1000
#define WAIT_MS 5000 /* bound on every wait in these tests */

static char base[64];	 /* mkdtemp root; the cache lives in base/cache */
static char dir[256];	 /* base/cache */
static char tmpdir[320]; /* base/cache/v1/tmp */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void setup(void)
{
	snprintf(base, sizeof(base), "/tmp/test_cache.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/cache", base);
	snprintf(tmpdir, sizeof(tmpdir), "%s/v1/tmp", dir);
}

static void teardown(void)
{
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct cache *open_cache(uint64_t max)
{
	struct cache_config cfg = {.dir = dir, .max_bytes = max};
	struct cache *c = NULL;

	ck_assert_int_eq(cache_open(&cfg, &c), 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

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

static int fill_cb(int fd, void *arg)
{
	struct fill *f = arg;
	char buf[BLOB];
	size_t done = 0;
	int in, m;

	atomic_fetch_add(&f->calls, 1);
	in = atomic_fetch_add(&f->inside, 1) + 1;
	while ((m = atomic_load(&f->max_inside)) < in &&
	       !atomic_compare_exchange_weak(&f->max_inside, &m, in))
		;
	for (int64_t t0 = now_ms(); f->rendezvous > 0 &&
				    atomic_load(&f->max_inside) < f->rendezvous &&
				    now_ms() - t0 < WAIT_MS;)
		sleep_ms(1);
	if (f->delay_ms)
		sleep_ms(f->delay_ms);
	memset(buf, f->byte, sizeof(buf));
	while (done < f->len) {
		size_t n = f->len - done < sizeof(buf) ? f->len - done : sizeof(buf);
		ssize_t w = write(fd, f->data ? f->data + done : buf, n);

		ck_assert_int_gt(w, 0);
		done += (size_t)w;
	}
	atomic_fetch_sub(&f->inside, 1);
	return f->result;
}

static void fill_init(struct fill *f, char byte, size_t len)
{
	memset(f, 0, sizeof(*f));
	f->byte = byte;
	f->len = len;
}

/* Reads the whole fd with read(2) (so offsets must be independent) and checks it. */
static void check_fd(int fd, char byte, size_t len)
{
	char buf[4096];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			ck_assert_int_eq(buf[i], byte);
		total += (size_t)n;
	}
	ck_assert_int_eq(n, 0);
	ck_assert_uint_eq(total, len);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
}

static void get_blob(struct cache *c, const char *id, int64_t v, char byte, size_t len)
{
	struct fill f;
	uint64_t size = 0;
	int fd = -1;

	fill_init(&f, byte, len);
	ck_assert_int_eq(cache_get(c, id, v, fill_cb, &f, &fd, &size), 0);
	ck_assert_uint_eq(size, len);
	check_fd(fd, byte, len);
	close(fd);
}

static bool lookup_ok(struct cache *c, const char *id, int64_t v, char byte, size_t len)
{
	uint64_t size = 0;
	int fd = -1, err = cache_lookup(c, id, v, &fd, &size);

	if (err == -ENOENT)
		return false;
	ck_assert_int_eq(err, 0);
	ck_assert_uint_eq(size, len);
	check_fd(fd, byte, len);
	close(fd);
	return true;
}

/* Totals over every regular file under path. */
static uint64_t walk_bytes, walk_files;
static const char *walk_root;

static int walk_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	ck_assert_msg(strncmp(p, walk_root, strlen(walk_root)) == 0, "'%s' outside", p);
	if (flag == FTW_F) {
		walk_bytes += (uint64_t)st->st_size;
		walk_files++;
	}
	return 0;
}

static uint64_t disk_files(const char *sub, uint64_t *bytes)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/v1/%s", dir, sub);
	walk_bytes = walk_files = 0;
	walk_root = p;
	ck_assert_int_eq(nftw(p, walk_one, 16, FTW_PHYS), 0);
	if (bytes)
		*bytes = walk_bytes;
	return walk_files;
}

static struct cache_stats stats(struct cache *c)
{
	struct cache_stats st;

	cache_stats_get(c, &st);
	return st;
}

START_TEST(test_sha256_vectors)
{
	static const struct {
		const char *in, *hex;
	} v[] = {
	    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	uint8_t out[CACHE_SHA256_LEN];
	char hex[2 * CACHE_SHA256_LEN + 1];
	struct cache_sha256 s;
	char chunk[997];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cache_sha256(v[i].in, strlen(v[i].in), out);
		for (int j = 0; j < CACHE_SHA256_LEN; j++)
			snprintf(hex + 2 * j, 3, "%02x", out[j]);
		ck_assert_str_eq(hex, v[i].hex);
	}
	/* One million 'a', fed in odd-sized pieces to exercise the block buffer. */
	memset(chunk, 'a', sizeof(chunk));
	cache_sha256_init(&s);
	for (size_t left = 1000000; left > 0;) {
		size_t n = left < sizeof(chunk) ? left : sizeof(chunk);

		cache_sha256_update(&s, chunk, n);
		left -= n;
	}
	cache_sha256_final(&s, out);
	for (int j = 0; j < CACHE_SHA256_LEN; j++)
		snprintf(hex + 2 * j, 3, "%02x", out[j]);
	ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_hit_miss)
{
	struct cache *c = open_cache(1 << 20);
	struct fill f;
	uint64_t size = 0;
	int fd = -1;

	ck_assert(!lookup_ok(c, "img", 1, 'x', 10));
	fill_init(&f, 'x', 10);
	ck_assert_int_eq(cache_get(c, "img", 1, fill_cb, &f, &fd, &size), 0);
	check_fd(fd, 'x', 10);
	close(fd);
	ck_assert_int_eq(f.calls, 1);
	ck_assert_int_eq(cache_get(c, "img", 1, fill_cb, &f, &fd, &size), 0);
	ck_assert_int_eq(f.calls, 1); /* served from disk */
	check_fd(fd, 'x', 10);
	close(fd);
	ck_assert(lookup_ok(c, "img", 1, 'x', 10));
	struct cache_stats st = stats(c);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.misses, 2);
	ck_assert_uint_eq(st.fills, 1);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.bytes, 10);
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	ck_assert_int_eq(cache_lookup(c, NULL, 1, &fd, &size), -EINVAL);
	ck_assert_int_eq(cache_get(c, "img", 1, NULL, NULL, &fd, &size), -EINVAL);
	cache_close(c);
}
END_TEST

struct racer {
	struct cache *c;
	struct fill *f;
	const char *id;
	int err, fd;
	uint64_t size;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	r->fd = -1;
	r->err = cache_get(r->c, r->id, 7, fill_cb, r->f, &r->fd, &r->size);
	return NULL;
}

/* Runs n threads of cache_get; ids[i % nids] is thread i's key. */
static void race(struct cache *c, struct fill *f, const char **ids, int nids, struct racer *r,
		 int n)
{
	pthread_t t[16];

	for (int i = 0; i < n; i++) {
		r[i] = (struct racer){.c = c, .f = f, .id = ids[i % nids]};
		ck_assert_int_eq(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

START_TEST(test_single_flight)
{
	struct cache *c = open_cache(1 << 20);
	const char *ids[] = {"hot"};
	struct racer r[8];
	struct fill f;

	fill_init(&f, 'h', 3000);
	f.delay_ms = 300;
	race(c, &f, ids, 1, r, 8);
	ck_assert_int_eq(f.calls, 1);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(r[i].err, 0);
		ck_assert_uint_eq(r[i].size, 3000);
		check_fd(r[i].fd, 'h', 3000); /* read(2) from each: offsets are independent */
	}
	for (int i = 0; i < 8; i++)
		close(r[i].fd);
	ck_assert_uint_eq(stats(c).fills, 1);
	ck_assert_uint_eq(stats(c).entries, 1);
	cache_close(c);
}
END_TEST

START_TEST(test_parallel_keys)
{
	struct cache *c = open_cache(1 << 20);
	const char *ids[] = {"k1", "k2", "k3", "k4"};
	struct racer r[4];
	struct fill f;

	fill_init(&f, 'p', 100);
	f.rendezvous = 4; /* each fill waits until all four run at once (or times out) */
	race(c, &f, ids, 4, r, 4);
	ck_assert_int_eq(f.calls, 4);
	ck_assert_int_eq(f.max_inside, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(r[i].err, 0);
		close(r[i].fd);
	}
	cache_close(c);
}
END_TEST

START_TEST(test_failed_fill)
{
	struct cache *c = open_cache(1 << 20);
	const char *ids[] = {"bad"};
	struct racer r[4];
	struct fill f;
	int fd = -1;

	fill_init(&f, 'e', 500); /* writes half a blob, then fails */
	f.result = -EIO;
	ck_assert_int_eq(cache_get(c, "bad", 1, fill_cb, &f, &fd, NULL), -EIO);
	ck_assert_int_eq(fd, -1);
	f.result = 5; /* not a valid return: must not count as success */
	ck_assert_int_eq(cache_get(c, "bad", 1, fill_cb, &f, &fd, NULL), -EIO);
	/* Waiters share the filler's error. */
	f.result = -ECONNRESET;
	f.delay_ms = 300;
	race(c, &f, ids, 1, r, 4);
	ck_assert_int_eq(f.calls, 3);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(r[i].err, -ECONNRESET);
	ck_assert(!lookup_ok(c, "bad", 7, 'e', 500));
	ck_assert_uint_eq(stats(c).entries, 0);
	ck_assert_uint_eq(disk_files("objects", NULL), 0);
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	cache_close(c);
}
END_TEST

static void check_cap(uint64_t max)
{
	uint64_t bytes;

	disk_files("objects", &bytes);
	ck_assert_uint_le(bytes, max);
}

START_TEST(test_cap_lru)
{
	struct cache *c = open_cache(3000);

	get_blob(c, "a", 1, 'a', BLOB);
	get_blob(c, "b", 1, 'b', BLOB);
	get_blob(c, "c", 1, 'c', BLOB);
	check_cap(3000);
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB)); /* a is now newer than b and c */
	get_blob(c, "d", 1, 'd', BLOB);
	check_cap(3000);
	ck_assert(!lookup_ok(c, "b", 1, 'b', BLOB)); /* oldest by use, not by insert */
	get_blob(c, "e", 1, 'e', BLOB);
	check_cap(3000);
	ck_assert(!lookup_ok(c, "c", 1, 'c', BLOB));
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB));
	ck_assert(lookup_ok(c, "d", 1, 'd', BLOB));
	ck_assert(lookup_ok(c, "e", 1, 'e', BLOB));
	struct cache_stats st = stats(c);
	ck_assert_uint_eq(st.bytes, 3000);
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_uint_eq(st.evictions, 2);
	ck_assert_uint_eq(disk_files("objects", NULL), 3);
	/* A 2500-byte blob needs room: evicts the three least recently used. */
	get_blob(c, "big", 1, 'B', 2500);
	check_cap(3000);
	ck_assert_uint_eq(stats(c).entries, 1);
	cache_close(c);
}
END_TEST

START_TEST(test_oversize_not_kept)
{
	struct cache *c = open_cache(3000);
	const char *ids[] = {"huge"};
	struct racer r[4];
	struct fill f;

	get_blob(c, "small", 1, 's', BLOB);
	get_blob(c, "huge", 1, 'H', 5000);
	ck_assert_uint_eq(stats(c).entries, 1); /* nothing evicted for a blob never kept */
	ck_assert(lookup_ok(c, "small", 1, 's', BLOB));
	ck_assert(!lookup_ok(c, "huge", 1, 'H', 5000));
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	/* Waiters on an oversize fill read the unlinked temp file too. */
	fill_init(&f, 'H', 5000);
	f.delay_ms = 300;
	race(c, &f, ids, 1, r, 4);
	ck_assert_int_eq(f.calls, 1);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(r[i].err, 0);
		check_fd(r[i].fd, 'H', 5000);
		close(r[i].fd);
	}
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	cache_close(c);

	c = open_cache(0); /* keep nothing, still serve */
	ck_assert_uint_eq(stats(c).entries, 0);
	get_blob(c, "x", 1, 'x', 10);
	get_blob(c, "empty", 1, 'x', 0);
	ck_assert_uint_eq(stats(c).entries, 0);
	ck_assert_uint_eq(disk_files("objects", NULL), 0);
	cache_close(c);
}
END_TEST

START_TEST(test_persistence)
{
	struct cache *c = open_cache(3000);

	get_blob(c, "a", 1, 'a', BLOB);
	get_blob(c, "b", 1, 'b', BLOB);
	get_blob(c, "c", 1, 'c', BLOB);
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB));
	cache_close(c);

	c = open_cache(3000);
	ck_assert_uint_eq(stats(c).entries, 3);
	ck_assert_uint_eq(stats(c).bytes, 3000);
	get_blob(c, "d", 1, 'd', BLOB); /* LRU order b < c < a survived: b goes */
	ck_assert(!lookup_ok(c, "b", 1, 'b', BLOB));
	ck_assert(lookup_ok(c, "c", 1, 'c', BLOB));
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB));
	ck_assert(lookup_ok(c, "d", 1, 'd', BLOB));
	cache_close(c);
}
END_TEST

START_TEST(test_reopen_smaller)
{
	struct cache *c = open_cache(3000);

	get_blob(c, "a", 1, 'a', BLOB);
	get_blob(c, "b", 1, 'b', BLOB);
	get_blob(c, "c", 1, 'c', BLOB);
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB));
	cache_close(c);

	c = open_cache(2000);
	ck_assert_uint_eq(stats(c).entries, 2);
	ck_assert_uint_eq(stats(c).evictions, 1);
	check_cap(2000);
	ck_assert(!lookup_ok(c, "b", 1, 'b', BLOB));
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB));
	ck_assert(lookup_ok(c, "c", 1, 'c', BLOB));
	cache_close(c);

	c = open_cache(0);
	ck_assert_uint_eq(stats(c).entries, 0);
	ck_assert_uint_eq(disk_files("objects", NULL), 0);
	cache_close(c);
}
END_TEST

/* Path of the entry file of (id, version) with committed size `size`; size < 0 gives the
 * old format "<H>-<V>" that has no size in it. */
static void entry_path(const char *id, int64_t version, int64_t size, char out[512])
{
	uint8_t h[CACHE_SHA256_LEN];
	char hex[65];
	int n;

	cache_sha256(id, strlen(id), h);
	for (int j = 0; j < CACHE_SHA256_LEN; j++)
		snprintf(hex + 2 * j, 3, "%02x", h[j]);
	n = snprintf(out, 512, "%s/v1/objects/%.2s/%s-%016llx", dir, hex, hex,
		     (unsigned long long)version);
	if (size >= 0)
		snprintf(out + n, 512 - (size_t)n, "-%016llx", (unsigned long long)size);
}

static void write_file(const char *path, size_t len, time_t mtime)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[BLOB];

	ck_assert_int_ge(fd, 0);
	memset(buf, 'z', sizeof(buf));
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	if (mtime) {
		struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};

		ck_assert_int_eq(futimens(fd, ts), 0);
	}
	close(fd);
}

START_TEST(test_open_cleans_and_orders)
{
	char p[512], names[8][512];
	struct cache *c = open_cache(1000);
	int i;

	cache_close(c);
	/* Crash leftovers in tmp/ and a stray file in objects/. */
	snprintf(p, sizeof(p), "%s/fill-0123456789abcdef", tmpdir);
	write_file(p, 100, 0);
	snprintf(p, sizeof(p), "%s/stage-0123456789abcdef", tmpdir);
	write_file(p, 100, 0);
	snprintf(p, sizeof(p), "%s/v1/objects/00/junk", dir);
	write_file(p, 100, 0);
	/* Eight 100-byte entries written behind the cache's back, mtimes shuffled; half of
	 * them in the old name format (without the size), which is migrated keeping the
	 * mtime, so the LRU order is the same. */
	for (i = 0; i < 8; i++) {
		char id[8];

		snprintf(id, sizeof(id), "e%d", i);
		entry_path(id, 1, i % 2 ? -1 : 100, names[i]);
		write_file(names[i], 100, 1000000 + (i * 5) % 8); /* e0 oldest ... */
	}
	c = open_cache(500); /* keeps the 5 most recently used */
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	ck_assert_uint_eq(stats(c).entries, 5);
	ck_assert_uint_eq(disk_files("objects", NULL), 5); /* junk is gone too */
	for (i = 0; i < 8; i++) {
		char id[8];
		bool kept = (i * 5) % 8 >= 3;

		snprintf(id, sizeof(id), "e%d", i);
		ck_assert_msg(lookup_ok(c, id, 1, 'z', 100) == kept, "entry %s", id);
		if (i % 2)
			ck_assert_int_ne(access(names[i], F_OK), 0); /* old names are gone */
		entry_path(id, 1, 100, p);
		ck_assert_int_eq(access(p, F_OK) == 0, kept);
	}
	cache_close(c);
}
END_TEST

/* The power-loss case: delayed allocation can leave a renamed entry empty or short. Such a
 * file keeps its name (and so the committed size): cache_open drops it, it is never served,
 * and the next cache_get fills it again. Entries of the right size (even 0) survive. */
START_TEST(test_truncated_dropped)
{
	struct cache *c = open_cache(1 << 20);
	char pa[512], pb[512], pc[512], pe[512];
	struct fill f;
	int fd = -1;

	get_blob(c, "a", 1, 'a', BLOB);
	get_blob(c, "b", 1, 'b', BLOB);
	get_blob(c, "c", 1, 'c', BLOB);
	get_blob(c, "e", 1, 'e', 0);
	cache_close(c);
	entry_path("a", 1, BLOB, pa);
	entry_path("b", 1, BLOB, pb);
	entry_path("c", 1, BLOB, pc);
	entry_path("e", 1, 0, pe);
	ck_assert_int_eq(truncate(pa, 0), 0);
	ck_assert_int_eq(truncate(pb, BLOB / 2), 0);

	c = open_cache(1 << 20);
	ck_assert_uint_eq(stats(c).entries, 2);
	ck_assert_uint_eq(stats(c).bytes, BLOB);
	ck_assert_int_ne(access(pa, F_OK), 0);
	ck_assert_int_ne(access(pb, F_OK), 0);
	ck_assert_uint_eq(disk_files("objects", NULL), 2);
	ck_assert(!lookup_ok(c, "a", 1, 'a', BLOB));
	ck_assert(!lookup_ok(c, "b", 1, 'b', BLOB));
	ck_assert(lookup_ok(c, "c", 1, 'c', BLOB));
	ck_assert(lookup_ok(c, "e", 1, 'e', 0));
	fill_init(&f, 'A', BLOB);
	ck_assert_int_eq(cache_get(c, "a", 1, fill_cb, &f, &fd, NULL), 0);
	ck_assert_int_eq(f.calls, 1);
	check_fd(fd, 'A', BLOB);
	close(fd);
	ck_assert_int_eq(access(pa, F_OK), 0);

	/* Changed behind the cache's back while open: dropped at the next hit, not served. */
	ck_assert_int_eq(truncate(pc, 10), 0);
	ck_assert(!lookup_ok(c, "c", 1, 'c', BLOB));
	ck_assert_int_ne(access(pc, F_OK), 0);
	ck_assert_uint_eq(stats(c).entries, 2);
	ck_assert_uint_eq(stats(c).bytes, BLOB);
	ck_assert_uint_eq(disk_files("objects", NULL), 2);
	cache_close(c);
}
END_TEST

/* Old-format names ("<H>-<V>", written with fsync by earlier versions) are renamed to the
 * current format at open and kept; an old name next to a current one of the same key goes. */
START_TEST(test_old_format_migrated)
{
	struct cache *c = open_cache(1 << 20);
	char old1[512], old2[512], cur2[512], old3[512], cur3[512], p[512];

	cache_close(c);
	entry_path("o1", 5, -1, old1);
	entry_path("o2", 5, -1, old2);
	entry_path("o2", 5, 100, cur2);
	entry_path("o3", 5, -1, old3);
	entry_path("o3", 5, 100, cur3);
	write_file(old1, 300, 1000000);
	write_file(old2, 50, 1000001); /* migrates to a name of its own, then loses on LRU */
	write_file(cur2, 100, 1000002);
	write_file(old3, 100, 1000004); /* would migrate onto cur3's very name */
	write_file(cur3, 100, 1000003);

	c = open_cache(1 << 20);
	ck_assert_uint_eq(stats(c).entries, 3);
	ck_assert_uint_eq(stats(c).bytes, 500);
	ck_assert_int_ne(access(old1, F_OK), 0);
	ck_assert_int_ne(access(old2, F_OK), 0);
	ck_assert_int_ne(access(old3, F_OK), 0);
	entry_path("o1", 5, 300, p);
	ck_assert_int_eq(access(p, F_OK), 0);
	entry_path("o2", 5, 50, p);
	ck_assert_int_ne(access(p, F_OK), 0);
	ck_assert_int_eq(access(cur2, F_OK), 0);
	ck_assert_int_eq(access(cur3, F_OK), 0);
	ck_assert_uint_eq(disk_files("objects", NULL), 3);
	ck_assert(lookup_ok(c, "o1", 5, 'z', 300));
	ck_assert(lookup_ok(c, "o2", 5, 'z', 100));
	ck_assert(lookup_ok(c, "o3", 5, 'z', 100));
	cache_close(c);

	c = open_cache(1 << 20); /* a second open finds only current names */
	ck_assert_uint_eq(stats(c).entries, 3);
	ck_assert(lookup_ok(c, "o1", 5, 'z', 300));
	cache_close(c);
}
END_TEST

/* IMAGESFS_CACHE_FSYNC=1 brings back the fsync before every commit; behaviour is the same.
 * (Check forks each test, so the environment change stays in this test.) */
START_TEST(test_fsync_env)
{
	struct cache *c;
	char *staged = NULL, buf[BLOB];
	int fd = -1;

	ck_assert_int_eq(setenv("IMAGESFS_CACHE_FSYNC", "1", 1), 0);
	c = open_cache(1 << 20);
	get_blob(c, "s", 1, 's', BLOB);
	memset(buf, 'u', sizeof(buf));
	ck_assert_int_eq(cache_stage_open(c, &fd, &staged), 0);
	ck_assert_int_eq(write(fd, buf, BLOB), BLOB);
	close(fd);
	ck_assert_int_eq(cache_adopt(c, "u", 1, staged), 0);
	free(staged);
	cache_close(c);
	c = open_cache(1 << 20);
	ck_assert(lookup_ok(c, "s", 1, 's', BLOB));
	ck_assert(lookup_ok(c, "u", 1, 'u', BLOB));
	cache_close(c);
	unsetenv("IMAGESFS_CACHE_FSYNC");
}
END_TEST

START_TEST(test_version_keying)
{
	struct cache *c = open_cache(1 << 20);

	get_blob(c, "img", 100, 'o', 50);
	ck_assert(!lookup_ok(c, "img", 200, 'o', 50));
	get_blob(c, "img", 200, 'n', 60); /* fill runs: old bytes are not served */
	ck_assert(lookup_ok(c, "img", 200, 'n', 60));
	ck_assert(lookup_ok(c, "img", 100, 'o', 50));
	get_blob(c, "img", -1, 'm', 5); /* negative versions are keys too */
	ck_assert_uint_eq(stats(c).fills, 3);
	ck_assert_uint_eq(stats(c).entries, 3);
	cache_close(c);
}
END_TEST

static void *remove_when_filling(void *arg)
{
	struct racer *r = arg;

	for (int64_t t0 = now_ms(); atomic_load(&r->f->inside) == 0 && now_ms() - t0 < WAIT_MS;)
		sleep_ms(1);
	r->err = cache_remove(r->c, r->id);
	return NULL;
}

START_TEST(test_remove_all_versions)
{
	struct cache *c = open_cache(1 << 20);
	struct racer rm;
	pthread_t t;
	struct fill f;
	int fd = -1;

	get_blob(c, "img", 1, '1', 100);
	get_blob(c, "img", 2, '2', 200);
	get_blob(c, "other", 1, 'o', 300);
	ck_assert_int_eq(cache_lookup(c, "img", 1, &fd, NULL), 0);
	ck_assert_int_eq(cache_remove(c, "img"), 0);
	ck_assert(!lookup_ok(c, "img", 1, '1', 100));
	ck_assert(!lookup_ok(c, "img", 2, '2', 200));
	ck_assert(lookup_ok(c, "other", 1, 'o', 300));
	check_fd(fd, '1', 100); /* the open fd still reads the removed blob */
	close(fd);
	ck_assert_uint_eq(stats(c).entries, 1);
	ck_assert_uint_eq(stats(c).bytes, 300);
	ck_assert_uint_eq(disk_files("objects", NULL), 1);
	ck_assert_int_eq(cache_remove(c, "never-cached"), 0);

	/* A remove during a fill: the caller is served, the blob is not kept. */
	fill_init(&f, 'r', 100);
	f.delay_ms = 100;
	rm = (struct racer){.c = c, .f = &f, .id = "img", .err = 1};
	ck_assert_int_eq(pthread_create(&t, NULL, remove_when_filling, &rm), 0);
	ck_assert_int_eq(cache_get(c, "img", 3, fill_cb, &f, &fd, NULL), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(rm.err, 0);
	check_fd(fd, 'r', 100);
	close(fd);
	ck_assert(!lookup_ok(c, "img", 3, 'r', 100));
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	cache_close(c);
}
END_TEST

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[n] == '\0' || s[n] == '-';
}

/* Every path under the cache dir is one we expect; every entry name is hash-shaped. */
static int hostile_walk(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *rel = p + strlen(dir), *name = p + ftw->base;

	ck_assert_msg(strncmp(p, dir, strlen(dir)) == 0, "'%s' outside the cache", p);
	if (flag == FTW_F && strcmp(rel, "/v1/lock") != 0) {
		ck_assert_msg(strncmp(rel, "/v1/objects/", 12) == 0, "unexpected file '%s'", p);
		ck_assert_msg(strlen(name) == 98 && is_hex(name, 64) && name[64] == '-' &&
				  is_hex(name + 65, 16) && is_hex(name + 82, 16),
			      "unexpected name '%s'", p);
		ck_assert_uint_eq(strtoull(name + 82, NULL, 16), (uint64_t)st->st_size);
	}
	return 0;
}

START_TEST(test_hostile_ids)
{
	char longid[1025], p[512];
	const char *ids[] = {"../x",	    "a/b",	  "",
			     ".",	    "..",	  "../../../../../../tmp/evil",
			     "/etc/passwd", "%s%n\n\t*?", longid};
	size_t n = sizeof(ids) / sizeof(ids[0]);
	struct cache *c = open_cache(1 << 20);
	DIR *d;
	struct dirent *de;
	int count = 0;

	for (int i = 0; i < 512; i++) /* 1024 bytes of UTF-8 ("é" is 0xc3 0xa9) */
		memcpy(longid + 2 * i, "\xc3\xa9", 2);
	longid[1024] = '\0';
	for (size_t i = 0; i < n; i++)
		get_blob(c, ids[i], 1, (char)('A' + i), 10 + i);
	for (size_t i = 0; i < n; i++)
		ck_assert(lookup_ok(c, ids[i], 1, (char)('A' + i), 10 + i));
	ck_assert_uint_eq(stats(c).entries, n);
	ck_assert_int_eq(cache_remove(c, "a"), 0); /* not a prefix match on "a/b" */
	ck_assert(lookup_ok(c, "a/b", 1, 'B', 11));
	ck_assert_int_eq(nftw(dir, hostile_walk, 16, FTW_PHYS), 0);
	ck_assert_ptr_nonnull(d = opendir(base)); /* nothing next to the cache dir */
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			ck_assert_str_eq(de->d_name, "cache");
			count++;
		}
	closedir(d);
	ck_assert_int_eq(count, 1);
	snprintf(p, sizeof(p), "%s/v1/x", dir);
	ck_assert_int_ne(access(p, F_OK), 0);
	cache_close(c);
}
END_TEST

static void assert_mode(const char *p, mode_t want)
{
	struct stat st;

	ck_assert_int_eq(lstat(p, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == want, "'%s' has mode %o", p, st.st_mode & 07777);
}

static int mode_walk(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	assert_mode(p, flag == FTW_D ? 0700 : 0600);
	return 0;
}

static void check_modes_with_umask(mode_t mask)
{
	mode_t old = umask(mask);
	struct cache_config cfg = {.max_bytes = 1 << 20};
	char nested[256], p[300];
	struct cache *c = NULL;
	char *staged = NULL;
	int fd = -1;

	snprintf(nested, sizeof(nested), "%s/m%o/a/b", base, (unsigned)mask);
	cfg.dir = nested;
	ck_assert_int_eq(cache_open(&cfg, &c), 0);
	snprintf(dir, sizeof(dir), "%s", nested); /* get_blob and walks use dir */
	get_blob(c, "x", 1, 'x', 10);
	ck_assert_int_eq(cache_stage_open(c, &fd, &staged), 0);
	close(fd);
	umask(old);
	snprintf(p, sizeof(p), "%s/m%o", base, (unsigned)mask);
	ck_assert_int_eq(nftw(p, mode_walk, 16, FTW_PHYS), 0); /* incl. the created parents */
	ck_assert_int_eq(cache_adopt(c, "y", 1, staged), 0);
	ck_assert_int_eq(nftw(p, mode_walk, 16, FTW_PHYS), 0);
	free(staged);
	cache_close(c);
}

START_TEST(test_modes)
{
	check_modes_with_umask(0);
	check_modes_with_umask(0277); /* a umask that would strip our own bits */
}
END_TEST

START_TEST(test_adopt)
{
	struct cache *c = open_cache(3000);
	char outside[512], sneaky[1024], fillname[512], buf[BLOB];
	char *staged = NULL;
	int fd = -1;

	memset(buf, 's', sizeof(buf));
	ck_assert_int_eq(cache_stage_open(c, &fd, &staged), 0);
	ck_assert_int_eq(strncmp(staged, tmpdir, strlen(tmpdir)), 0);
	ck_assert_int_eq(write(fd, buf, BLOB), BLOB);
	close(fd);
	ck_assert_int_eq(cache_adopt(c, "up", 5, staged), 0);
	ck_assert_int_ne(access(staged, F_OK), 0);
	ck_assert(lookup_ok(c, "up", 5, 's', BLOB));
	free(staged);

	/* Refusals never touch the named file. */
	snprintf(outside, sizeof(outside), "%s/outside", base);
	write_file(outside, 10, 0);
	snprintf(sneaky, sizeof(sneaky), "%s/../../outside", tmpdir);
	snprintf(fillname, sizeof(fillname), "%s/fill-0000000000000000", tmpdir);
	write_file(fillname, 10, 0);
	ck_assert_int_eq(cache_adopt(c, "o", 1, outside), -EINVAL);
	ck_assert_int_eq(cache_adopt(c, "o", 1, sneaky), -EINVAL);
	ck_assert_int_eq(cache_adopt(c, "o", 1, fillname), -EINVAL);
	ck_assert_int_eq(cache_adopt(c, "o", 1, tmpdir), -EINVAL);
	ck_assert_int_eq(cache_adopt(c, "o", 1, "stage-0000000000000000"), -EINVAL);
	ck_assert_int_eq(access(outside, F_OK), 0);
	ck_assert_int_eq(access(fillname, F_OK), 0);
	unlink(fillname);
	snprintf(sneaky, sizeof(sneaky), "%s/stage-doesnotexist", tmpdir);
	ck_assert_int_eq(cache_adopt(c, "o", 1, sneaky), -ENOENT);

	/* Adopt applies the cap: evicts to make room, and drops a blob over the cap. */
	get_blob(c, "b", 1, 'b', BLOB);
	get_blob(c, "c", 1, 'c', BLOB);
	ck_assert_int_eq(cache_stage_open(c, &fd, &staged), 0);
	ck_assert_int_eq(write(fd, buf, BLOB), BLOB);
	close(fd);
	ck_assert_int_eq(cache_adopt(c, "d", 1, staged), 0);
	free(staged);
	check_cap(3000);
	ck_assert(!lookup_ok(c, "up", 5, 's', BLOB));
	ck_assert(lookup_ok(c, "d", 1, 's', BLOB));
	ck_assert_int_eq(cache_stage_open(c, &fd, &staged), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(write(fd, buf, BLOB), BLOB);
	close(fd);
	ck_assert_int_eq(cache_adopt(c, "big", 1, staged), 0);
	ck_assert_int_ne(access(staged, F_OK), 0);
	free(staged);
	ck_assert_uint_eq(stats(c).entries, 3);
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	cache_close(c);
}
END_TEST

/* A staged file becomes a pin by rename (counted, not evicted), and the pin becomes the
 * blob of a version by rename: the write-back path, without a copy. */
START_TEST(test_pin_adopt_commit)
{
	struct cache_config cfg = {.dir = dir, .max_bytes = 1 << 20};
	struct cache *c;
	char buf[300], *staged;
	int fd;
	memset(buf, 'w', sizeof(buf));
	ck_assert_int_eq(cache_open(&cfg, &c), 0);
	ck_assert_int_eq(cache_stage_open(c, &fd, &staged), 0);
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	ck_assert_int_eq(cache_pin_adopt(c, "bad/name", staged), -EINVAL);
	ck_assert_int_eq(cache_pin_adopt(c, "wc", "/etc/passwd"), -EINVAL);
	ck_assert_int_eq(cache_pin_adopt(c, "wc", staged), 0);
	ck_assert_int_ne(access(staged, F_OK), 0);
	free(staged);
	ck_assert_uint_eq(stats(c).pinned, 1);
	ck_assert_uint_eq(stats(c).pinned_bytes, sizeof(buf));
	ck_assert_int_eq(cache_pin_open(c, "wc", &fd), 0);
	check_fd(fd, 'w', sizeof(buf));
	close(fd);
	ck_assert_int_eq(cache_pin_commit(c, "wc", "up/x.png", 42), 0);
	ck_assert_uint_eq(stats(c).pinned, 0);
	ck_assert_uint_eq(stats(c).pinned_bytes, 0);
	ck_assert(lookup_ok(c, "up/x.png", 42, 'w', sizeof(buf)));
	ck_assert_int_eq(cache_pin_open(c, "wc", &fd), -ENOENT);
	ck_assert_int_eq(cache_pin_commit(c, "wc", "up/x.png", 43), -ENOENT);
	ck_assert_uint_eq(disk_files("tmp", NULL), 0);
	cache_close(c);
}
END_TEST

START_TEST(test_open_exclusive)
{
	struct cache_config cfg = {.dir = dir, .max_bytes = 100};
	struct cache *c = open_cache(100), *c2 = NULL;

	ck_assert_int_eq(cache_open(&cfg, &c2), -EBUSY);
	ck_assert_ptr_null(c2);
	cache_close(c);
	c = open_cache(100);
	cache_close(c);
	cfg.dir = "";
	ck_assert_int_eq(cache_open(&cfg, &c2), -EINVAL);
	ck_assert_int_eq(cache_open(NULL, &c2), -EINVAL);
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_sha256_vectors);
	tcase_add_test(tc, test_hit_miss);
	tcase_add_test(tc, test_single_flight);
	tcase_add_test(tc, test_parallel_keys);
	tcase_add_test(tc, test_failed_fill);
	tcase_add_test(tc, test_cap_lru);
	tcase_add_test(tc, test_oversize_not_kept);
	tcase_add_test(tc, test_persistence);
	tcase_add_test(tc, test_reopen_smaller);
	tcase_add_test(tc, test_open_cleans_and_orders);
	tcase_add_test(tc, test_truncated_dropped);
	tcase_add_test(tc, test_old_format_migrated);
	tcase_add_test(tc, test_fsync_env);
	tcase_add_test(tc, test_version_keying);
	tcase_add_test(tc, test_remove_all_versions);
	tcase_add_test(tc, test_hostile_ids);
	tcase_add_test(tc, test_modes);
	tcase_add_test(tc, test_adopt);
	tcase_add_test(tc, test_open_exclusive);
	tcase_add_test(tc, test_pin_adopt_commit);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * Benchmark mode, not run by ctest: `test_cache --bench DIR` times cache fills and adopts
 * of 1 MB blobs in a fresh cache under DIR (use a real disk, not tmpfs) and prints the
 * numbers. Nothing is asserted: timings depend on the machine.
 */
#define BENCH_BLOB (1 << 20)
#define BENCH_FILLS 200
#define BENCH_THREADS 8
#define BENCH_ADOPTS 25 /* per thread */

static char bench_buf[BENCH_BLOB];

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int bench_fill(int fd, void *arg)
{
	size_t done = 0;

	while (done < sizeof(bench_buf)) {
		ssize_t w = write(fd, bench_buf + done, sizeof(bench_buf) - done);

		if (w <= 0)
			return -EIO;
		done += (size_t)w;
	}
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void bench_report(const char *what, int64_t *us, int n, int64_t wall_us)
{
	int64_t sum = 0;

	qsort(us, (size_t)n, sizeof(*us), cmp_i64);
	for (int i = 0; i < n; i++)
		sum += us[i];
	printf("%-28s n=%d wall %8.1f ms  per op: mean %7.0f us  p50 %6lld  p90 %6lld  "
	       "p99 %6lld  max %6lld us\n",
	       what, n, (double)wall_us / 1000, (double)sum / n, (long long)us[n / 2],
	       (long long)us[n * 9 / 10], (long long)us[n * 99 / 100], (long long)us[n - 1]);
}

struct bench_thread {
	struct cache *c;
	int t;
	int64_t us[BENCH_ADOPTS], write_us[BENCH_ADOPTS];
	int err;
};

static void *bench_adopter(void *arg)
{
	struct bench_thread *b = arg;

	for (int i = 0; i < BENCH_ADOPTS && b->err == 0; i++) {
		char id[32], *staged = NULL;
		int fd = -1;
		int64_t t0;

		snprintf(id, sizeof(id), "up-%d-%d", b->t, i);
		if ((b->err = cache_stage_open(b->c, &fd, &staged)) < 0)
			break;
		t0 = now_us();
		b->err = bench_fill(fd, NULL);
		close(fd);
		b->write_us[i] = now_us() - t0;
		t0 = now_us();
		if (b->err == 0)
			b->err = cache_adopt(b->c, id, 1, staged);
		b->us[i] = now_us() - t0;
		free(staged);
	}
	return NULL;
}

static int bench_adopts(struct cache *c)
{
	static struct bench_thread th[BENCH_THREADS];
	static int64_t all[BENCH_THREADS * BENCH_ADOPTS], writes[BENCH_THREADS * BENCH_ADOPTS];
	pthread_t tid[BENCH_THREADS];
	int64_t t0 = now_us();
	int err = 0;

	for (int t = 0; t < BENCH_THREADS; t++) {
		th[t] = (struct bench_thread){.c = c, .t = t};
		if (pthread_create(&tid[t], NULL, bench_adopter, &th[t]) != 0)
			return -EAGAIN; /* the threads already started still run: exit soon */
	}
	for (int t = 0; t < BENCH_THREADS; t++) {
		pthread_join(tid[t], NULL);
		if (th[t].err < 0)
			err = th[t].err;
		memcpy(all + t * BENCH_ADOPTS, th[t].us, sizeof(th[t].us));
		memcpy(writes + t * BENCH_ADOPTS, th[t].write_us, sizeof(th[t].write_us));
	}
	t0 = now_us() - t0;
	if (err == 0) {
		bench_report("8 threads: stage write 1 MB", writes, BENCH_THREADS * BENCH_ADOPTS,
			     t0);
		bench_report("8 threads: cache_adopt", all, BENCH_THREADS * BENCH_ADOPTS, t0);
	}
	return err;
}

static int bench_fills(struct cache *c)
{
	static int64_t us[BENCH_FILLS];
	int64_t t0 = now_us();

	for (int i = 0; i < BENCH_FILLS; i++) {
		char id[32];
		int fd = -1, err;
		int64_t t1 = now_us();

		snprintf(id, sizeof(id), "fill-%d", i);
		if ((err = cache_get(c, id, 1, bench_fill, NULL, &fd, NULL)) < 0)
			return err;
		close(fd);
		us[i] = now_us() - t1;
	}
	bench_report("cache_get fill 1 MB", us, BENCH_FILLS, now_us() - t0);
	return 0;
}

static int bench_main(const char *where)
{
	struct cache_config cfg = {.max_bytes = (uint64_t)1 << 30};
	struct cache *c = NULL;
	int err;

	snprintf(base, sizeof(base), "%s/bench_cache.XXXXXX", where);
	if (strlen(where) > 32 || !mkdtemp(base)) {
		fprintf(stderr, "bench: cannot make a directory under '%s'\n", where);
		return EXIT_FAILURE;
	}
	snprintf(dir, sizeof(dir), "%s/cache", base);
	memset(bench_buf, 'b', sizeof(bench_buf));
	cfg.dir = dir;
	if ((err = cache_open(&cfg, &c)) == 0) {
		sync(); /* start both phases with no dirty data of earlier runs */
		err = bench_fills(c);
		sync();
		if (err == 0)
			err = bench_adopts(c);
		cache_close(c);
	}
	teardown();
	if (err < 0)
		fprintf(stderr, "bench: %s\n", strerror(-err));
	return err < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc == 3 && strcmp(argv[1], "--bench") == 0)
		return bench_main(argv[2]);
	sr = srunner_create(cache_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

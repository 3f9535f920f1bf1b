/*
 * Unit tests for cache/: the on-disk LRU blob cache (cache.h), plus its SHA-256.
 * Every test works in its own mkdtemp directory and walks it to check what is on disk.
 * This file: the shared fixture and helpers (test_cache.h), fills, lookups, single-flight,
 * the cap and removal ("core"), and main. What a cache finds on disk when it opens, entry
 * names, modes and adopt are in test_cache_disk.c ("disk"); --bench in test_cache_bench.c.
 */
#include <check.h>
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
#include "test_cache.h"

#define WAIT_MS 5000 /* bound on every wait in these tests */

char base[64];	  /* mkdtemp root; the cache lives in base/cache */
char dir[256];	  /* base/cache */
char tmpdir[320]; /* base/cache/v1/tmp */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

void setup(void)
{
	snprintf(base, sizeof(base), "/tmp/test_cache.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/cache", base);
	snprintf(tmpdir, sizeof(tmpdir), "%s/v1/tmp", dir);
}

void teardown(void)
{
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct cache *open_cache(uint64_t max)
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

int fill_cb(int fd, void *arg)
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

void fill_init(struct fill *f, char byte, size_t len)
{
	memset(f, 0, sizeof(*f));
	f->byte = byte;
	f->len = len;
}

void check_fd(int fd, char byte, size_t len)
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

void get_blob(struct cache *c, const char *id, int64_t v, char byte, size_t len)
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

bool lookup_ok(struct cache *c, const char *id, int64_t v, char byte, size_t len)
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

uint64_t disk_files(const char *sub, uint64_t *bytes)
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

struct cache_stats stats(struct cache *c)
{
	struct cache_stats st;

	cache_stats_get(c, &st);
	return st;
}
void check_cap(uint64_t max)
{
	uint64_t bytes;

	disk_files("objects", &bytes);
	ck_assert_uint_le(bytes, max);
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
	tcase_add_test(tc, test_version_keying);
	tcase_add_test(tc, test_remove_all_versions);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, test_cache_disk_tcase());
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc == 3 && strcmp(argv[1], "--bench") == 0)
		return test_cache_bench(argv[2]);
	sr = srunner_create(cache_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

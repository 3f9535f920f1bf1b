/*
 * Unit tests for cache/, the "disk" case: what a cache finds when it opens (entries kept
 * in LRU order, a smaller cap, crash leftovers, truncated entries, old entry names), the
 * fsync switch, hostile ids, file modes, adopt, and one cache per directory. The fixture
 * and helpers are test_cache.c's (test_cache.h).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

/* Leaves a closed cache (cap 3000) holding a, b and c, BLOB bytes each, last used in the
 * order b < c < a. */
static void leave_abc(void)
{
	struct cache *c = open_cache(3000);

	get_blob(c, "a", 1, 'a', BLOB);
	get_blob(c, "b", 1, 'b', BLOB);
	get_blob(c, "c", 1, 'c', BLOB);
	ck_assert(lookup_ok(c, "a", 1, 'a', BLOB));
	cache_close(c);
}

START_TEST(test_persistence)
{
	struct cache *c;

	leave_abc();
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
	struct cache *c;

	leave_abc();
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

TCase *test_cache_disk_tcase(void)
{
	TCase *tc = tcase_create("disk");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_persistence);
	tcase_add_test(tc, test_reopen_smaller);
	tcase_add_test(tc, test_open_cleans_and_orders);
	tcase_add_test(tc, test_truncated_dropped);
	tcase_add_test(tc, test_old_format_migrated);
	tcase_add_test(tc, test_fsync_env);
	tcase_add_test(tc, test_hostile_ids);
	tcase_add_test(tc, test_modes);
	tcase_add_test(tc, test_adopt);
	tcase_add_test(tc, test_open_exclusive);
	tcase_add_test(tc, test_pin_adopt_commit);
	return tc;
}

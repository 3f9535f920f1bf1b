/*
 * test_cache_bench.c - the benchmark mode of test_cache, not run by ctest:
 * `test_cache --bench DIR` times cache fills and adopts of 1 MB blobs in a fresh cache
 * under DIR (use a real disk, not tmpfs) and prints the numbers. Nothing is asserted:
 * timings depend on the machine.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "test_cache.h"

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

int test_cache_bench(const char *where)
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

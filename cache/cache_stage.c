/*
 * cache_stage.c - staged files made ahead of need.
 *
 * Every file written through the mount starts with cache_stage_open, inside the FUSE
 * request that creates it, and creating a file is the costliest step of a small write on
 * some filesystems: ext4 without a journal checks recently deleted inodes on each
 * allocation (find_inode_bit, recently_deleted), about 1 ms per file on the shared machine
 * the benchmarks ran on, where everything else a small write-back close() does costs less.
 * So a helper thread, started by the first cache_stage_open, keeps up to CACHE_STAGE_POOL
 * empty staged files ready and cache_stage_open hands one out when it can.
 *
 * Pool files are ordinary staged files ("stage-r-<random>" in tmp/, empty, mode 0600):
 * cache_close removes them, and after a crash cache_open's sweep of tmp/ removes them with
 * any other leftover. When the pool is empty (a burst, or the thread cannot create files)
 * cache_stage_open creates the file itself, as without a pool.
 */
#include "cache_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CACHE_STAGE_POOL 16
#define CACHE_STAGE_READY_PREFIX CACHE_STAGE_PREFIX "-r" /* "stage-r-<16 hex>" */
#define CACHE_STAGE_RETRY_MS 1000 /* after a failed create (disk full): wait, never spin */

struct cache_stage_pool {
	pthread_t thread;
	pthread_cond_t cond; /* with c->lock: a file was taken, or stop */
	int started, stop;   /* guarded by c->lock */
	int n;		     /* guarded by c->lock: ready files */
	int fd[CACHE_STAGE_POOL];
	char name[CACHE_STAGE_POOL][CACHE_TMP_NAME_MAX];
};

static void wait_ms_locked(struct cache *c, struct cache_stage_pool *p, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&p->cond, &c->lock, &ts);
}

static void *pool_main(void *arg)
{
	struct cache *c = arg;
	struct cache_stage_pool *p = c->stage_pool;
	char name[CACHE_TMP_NAME_MAX];
	int fd;
	pthread_mutex_lock(&c->lock);
	while (!p->stop) {
		if (p->n >= CACHE_STAGE_POOL) {
			pthread_cond_wait(&p->cond, &c->lock);
			continue;
		}
		pthread_mutex_unlock(&c->lock);
		int rc = cache_disk_tmp_create(c, CACHE_STAGE_READY_PREFIX, name, &fd);
		pthread_mutex_lock(&c->lock);
		if (rc < 0) {
			wait_ms_locked(c, p, CACHE_STAGE_RETRY_MS);
			continue;
		}
		p->fd[p->n] = fd;
		memcpy(p->name[p->n++], name, CACHE_TMP_NAME_MAX);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Starts the thread on first use (caches that never stage, like most tests, get none). */
static struct cache_stage_pool *pool_get_locked(struct cache *c)
{
	struct cache_stage_pool *p = c->stage_pool;
	if (p || c->stage_pool_failed)
		return p;
	if (!(p = calloc(1, sizeof(*p)))) {
		c->stage_pool_failed = 1;
		return NULL;
	}
	pthread_cond_init(&p->cond, NULL);
	c->stage_pool = p;
	if (pthread_create(&p->thread, NULL, pool_main, c) != 0) {
		pthread_cond_destroy(&p->cond);
		free(p);
		c->stage_pool = NULL;
		c->stage_pool_failed = 1; /* staged files are then created on demand */
		return NULL;
	}
	p->started = 1;
	return p;
}

int cache_stage_take(struct cache *c, int *fd_out, char **path_out)
{
	char name[CACHE_TMP_NAME_MAX];
	int fd = -1;
	pthread_mutex_lock(&c->lock);
	struct cache_stage_pool *p = pool_get_locked(c);
	if (p && p->n > 0) {
		fd = p->fd[--p->n];
		memcpy(name, p->name[p->n], CACHE_TMP_NAME_MAX);
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&c->lock);
	if (fd < 0)
		return -EAGAIN;
	size_t len = strlen(c->tmp_path) + 1 + strlen(name) + 1;
	char *path = malloc(len);
	if (!path) {
		close(fd);
		unlinkat(c->tmp_fd, name, 0);
		return -ENOMEM;
	}
	snprintf(path, len, "%s/%s", c->tmp_path, name);
	*fd_out = fd;
	*path_out = path;
	return 0;
}

void cache_stage_pool_close(struct cache *c)
{
	struct cache_stage_pool *p = c->stage_pool;
	if (!p)
		return;
	pthread_mutex_lock(&c->lock);
	p->stop = 1;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&c->lock);
	if (p->started)
		pthread_join(p->thread, NULL);
	for (int i = 0; i < p->n; i++) {
		close(p->fd[i]);
		unlinkat(c->tmp_fd, p->name[i], 0);
	}
	pthread_cond_destroy(&p->cond);
	free(p);
	c->stage_pool = NULL;
}

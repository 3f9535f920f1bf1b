/*
 * fs_local.c - sizes and mtimes this host learned, kept in the cache dir.
 *
 * The stamp (fs_times.c) gives every host the size and mtime of images written through
 * imagesfs. Two kinds of facts have no stamp: the size of an image uploaded elsewhere, which
 * this host learns only by reading it once, and mtimes under stamp=off. Both are kept here so
 * a remount, or the eviction of the blob from the cache, does not bring back size 0 or the
 * upload time.
 *
 * Format: <cache_dir>/attrs (0600), one line per fact, appended as learned:
 *   "<version> <size|-> <mtime_ns|-> <id>\n"
 * with version the image's `uploaded` in ms. A fact holds only for that version (a
 * re-uploaded id is another image). At mount the file is read into a hash table (later lines
 * win) and rewritten compactly when it holds more than twice as many lines as facts. At most
 * FS_LOCAL_MAX facts are kept; past that new ones are not recorded. Losing the file only
 * costs sizes shown as 0 until the next read: appends are not fsync'd.
 *
 * Locking: l->lock guards the table and the fd; callers may hold fs->lock (order: fs->lock
 * before l->lock).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FS_LOCAL_MAX 1000000
#define FS_LOCAL_BUCKETS 4096
#define FS_LOCAL_LINE_MAX (API_MAX_ID_LEN + 80)

struct fs_local_rec {
	struct fs_local_rec *next;
	int64_t version, size, mtime_ns; /* size -1 = none */
	int has_mtime;
	char id[];
};

struct fs_local {
	pthread_mutex_t lock;
	int fd; /* guarded by lock */
	size_t count, lines;
	struct fs_local_rec *tab[FS_LOCAL_BUCKETS];
};

static size_t bucket(const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 16777619u;
	return h % FS_LOCAL_BUCKETS;
}

static struct fs_local_rec *find(struct fs_local *l, const char *id)
{
	for (struct fs_local_rec *r = l->tab[bucket(id)]; r; r = r->next)
		if (strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

/* Sets the fact for id; returns 0, or -ENOSPC past FS_LOCAL_MAX, -ENOMEM. */
static int set_rec(struct fs_local *l, const char *id, const struct fs_local_rec *v)
{
	struct fs_local_rec *r = find(l, id);
	if (!r) {
		size_t len = strlen(id);
		if (l->count >= FS_LOCAL_MAX)
			return -ENOSPC;
		if (!(r = malloc(sizeof(*r) + len + 1)))
			return -ENOMEM;
		memcpy(r->id, id, len + 1);
		r->next = l->tab[bucket(id)];
		l->tab[bucket(id)] = r;
		l->count++;
	}
	r->version = v->version;
	r->size = v->size;
	r->has_mtime = v->has_mtime;
	r->mtime_ns = v->mtime_ns;
	return 0;
}

static int parse_line(char *line, struct fs_local_rec *v, char **id)
{
	char *p = line, *end;
	v->version = strtoll(p, &end, 10);
	if (end == p || *end != ' ')
		return -EINVAL;
	p = end + 1;
	v->size = -1;
	if (*p == '-')
		end = p + 1;
	else if ((v->size = strtoll(p, &end, 10)) < 0 || end == p)
		return -EINVAL;
	if (*end != ' ')
		return -EINVAL;
	p = end + 1;
	v->has_mtime = *p != '-';
	v->mtime_ns = v->has_mtime ? strtoll(p, &end, 10) : 0;
	if (!v->has_mtime)
		end = p + 1;
	if (end == p || *end != ' ' || !end[1])
		return -EINVAL;
	*id = end + 1;
	return 0;
}

static int format_line(char *buf, size_t len, const char *id, const struct fs_local_rec *v)
{
	char s[24] = "-", m[24] = "-";
	if (v->size >= 0)
		snprintf(s, sizeof(s), "%" PRId64, v->size);
	if (v->has_mtime)
		snprintf(m, sizeof(m), "%" PRId64, v->mtime_ns);
	int n = snprintf(buf, len, "%" PRId64 " %s %s %s\n", v->version, s, m, id);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

static void load(struct fs_local *l, FILE *f)
{
	char line[FS_LOCAL_LINE_MAX];
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);
		struct fs_local_rec v;
		char *id;
		if (!len || line[len - 1] != '\n')
			continue; /* cut short (or over-long): ignored */
		line[len - 1] = '\0';
		if (parse_line(line, &v, &id) == 0 && set_rec(l, id, &v) == 0)
			l->lines++;
	}
}

/* Rewrites the file with one line per fact (tmp + rename). */
static void compact(struct fs_local *l, const char *path)
{
	char tmp[4200], line[FS_LOCAL_LINE_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int ok = 1;
	for (size_t b = 0; ok && b < FS_LOCAL_BUCKETS; b++)
		for (struct fs_local_rec *r = l->tab[b]; ok && r; r = r->next) {
			int n = format_line(line, sizeof(line), r->id, r);
			ok = n > 0 && write(fd, line, (size_t)n) == n;
		}
	if (close(fd) < 0 || !ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return;
	}
	l->lines = l->count;
}

int fs_local_open(struct fs_ctx *fs)
{
	char path[4096];
	struct fs_local *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/attrs", fs->cfg.cache_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		int rc = -errno;
		fs_log(FS_LOG_WARN, "cannot open '%s': %s; learned sizes stay in memory", path,
		       strerror(errno));
		free(l);
		return rc;
	}
	FILE *f = fdopen(dup(fd), "r");
	if (f) {
		load(l, f);
		fclose(f);
	}
	if (l->lines > 2 * l->count + 1000)
		compact(l, path);
	if (l->lines == l->count) { /* compacted: append to the new file */
		close(fd);
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
	}
	pthread_mutex_init(&l->lock, NULL);
	l->fd = fd;
	fs->local = l;
	return 0;
}

void fs_local_close(struct fs_ctx *fs)
{
	struct fs_local *l = fs->local;
	if (!l)
		return;
	for (size_t b = 0; b < FS_LOCAL_BUCKETS; b++)
		while (l->tab[b]) {
			struct fs_local_rec *r = l->tab[b];
			l->tab[b] = r->next;
			free(r);
		}
	if (l->fd >= 0)
		close(l->fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
	fs->local = NULL;
}

void fs_local_put(struct fs_ctx *fs, const char *id, int64_t version, int64_t size, int has_mtime,
		  int64_t mtime_ns)
{
	struct fs_local *l = fs->local;
	struct fs_local_rec v = {
	    .version = version, .size = size, .has_mtime = has_mtime, .mtime_ns = mtime_ns};
	char line[FS_LOCAL_LINE_MAX];
	if (!l || strchr(id, '\n'))
		return;
	pthread_mutex_lock(&l->lock);
	struct fs_local_rec *old = find(l, id);
	if (old && old->version == version) { /* keep what this call does not know */
		if (v.size < 0)
			v.size = old->size;
		if (!v.has_mtime) {
			v.has_mtime = old->has_mtime;
			v.mtime_ns = old->mtime_ns;
		}
	}
	int n = format_line(line, sizeof(line), id, &v);
	if (n > 0 && set_rec(l, id, &v) == 0 && l->fd >= 0 && write(l->fd, line, (size_t)n) == n)
		l->lines++;
	pthread_mutex_unlock(&l->lock);
}

void fs_local_apply_locked(struct fs_ctx *fs, struct fs_node *n, const char *id, int64_t version)
{
	struct fs_local *l = fs->local;
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	struct fs_local_rec *r = find(l, id);
	if (r && r->version == version) {
		if (r->size >= 0 && r->size <= UINT32_MAX && !(n->flags & FS_NF_SIZE)) {
			n->size = (uint32_t)r->size;
			n->flags |= FS_NF_SIZE;
		}
		if (r->has_mtime && !(n->flags & FS_NF_MTIME)) {
			n->mtime_ns = r->mtime_ns;
			n->flags |= FS_NF_MTIME | FS_NF_TIMES; /* local: not in the image */
		}
	}
	pthread_mutex_unlock(&l->lock);
}

/*
 * journal_entry.c - the journal's records: the text format of an entry (see journal.c's
 * design note), writing one as <seq>.intent (temp file, fsync, rename, directory fsync),
 * parsing one back, the names of its pins, and the sorted entry table's insert. The bottom
 * of the module: journal.c, journal_log.c and journal_settle.c build on it.
 */
#include "journal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void journal_logf(struct journal *j, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	if (!j->log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	j->log(level, buf);
}

int64_t journal_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int esc_put(FILE *f, const char *key, const char *s)
{
	if (fprintf(f, "%s ", key) < 0)
		return -1;
	if (!s)
		return fputs("-\n", f) < 0 ? -1 : 0;
	if (!*s || (s[0] == '-' && !s[1])) /* "" and "-" are escaped so "-" means NULL */
		return fprintf(f, "%s\n", *s ? "%2D" : "%") < 0 ? -1 : 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int r =
		    (*p <= ' ' || *p > '~' || *p == '%') ? fprintf(f, "%%%02X", *p) : fputc(*p, f);
		if (r < 0)
			return -1;
	}
	return fputc('\n', f) < 0 ? -1 : 0;
}

static int hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* malloc'd unescaped value ("%" alone is the empty string); *bad set on malformed input. */
static char *unesc(const char *v, int *bad)
{
	if (!strcmp(v, "-"))
		return NULL;
	size_t n = strlen(v);
	char *out = malloc(n + 1), *o = out;
	if (!out) {
		*bad = 1;
		return NULL;
	}
	if (!strcmp(v, "%")) {
		*out = 0;
		return out;
	}
	for (const char *p = v; *p; p++) {
		if (*p != '%') {
			*o++ = *p;
			continue;
		}
		int hi = hexv(p[1]), lo = hi < 0 ? -1 : hexv(p[2]);
		if (lo < 0) {
			*bad = 1;
			break;
		}
		*o++ = (char)(hi * 16 + lo);
		p += 2;
	}
	*o = 0;
	if (*bad) {
		free(out);
		return NULL;
	}
	return out;
}

void journal_entry_free(struct jentry *e)
{
	if (!e)
		return;
	free(e->id);
	free(e->src);
	free(e->meta);
	free(e->new_meta);
	free(e->creator);
	free(e->filename);
	free(e);
}

void journal_entry_name(uint64_t seq, char *buf, size_t len)
{
	snprintf(buf, len, "%016" PRIx64 JOURNAL_SUFFIX, seq);
}

void journal_pin_name(uint64_t seq, char *buf, size_t len)
{
	snprintf(buf, len, "journal-%016" PRIx64, seq);
}

void journal_newpin_name(uint64_t seq, char *buf, size_t len)
{
	snprintf(buf, len, "journal-%016" PRIx64 "-new", seq);
}

uint64_t journal_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static const char *op_name(int op)
{
	return op == JOURNAL_RENAME ? "rename" : op == JOURNAL_UPLOAD ? "upload" : "replace";
}

int journal_entry_format(FILE *f, const struct jentry *e)
{
	char pin[64], newpin[64];
	journal_pin_name(e->seq, pin, sizeof(pin));
	journal_newpin_name(e->seq, newpin, sizeof(newpin));
	if (fprintf(f, "imagesfs-intent 1\nop %s\n", op_name(e->op)) < 0 ||
	    esc_put(f, "id", e->id) || esc_put(f, "src", e->src) ||
	    fprintf(f, "old_version %" PRId64 "\n", e->old_version) < 0 ||
	    (e->src_version && fprintf(f, "src_version %" PRId64 "\n", e->src_version) < 0) ||
	    (e->committed && fputs("committed 1\n", f) < 0) ||
	    esc_put(f, "pin", e->pinned ? pin : NULL) ||
	    esc_put(f, "newpin", e->new_pinned ? newpin : NULL) || esc_put(f, "meta", e->meta) ||
	    (e->new_meta && esc_put(f, "newmeta", e->new_meta)) ||
	    esc_put(f, "creator", e->creator) || esc_put(f, "filename", e->filename) ||
	    fprintf(f, "rsu %d\nend\n", e->rsu ? 1 : 0) < 0)
		return -EIO;
	return 0;
}

/* Writes the entry: tmp file, fsync, rename, fsync of the directory. */
int journal_entry_write(struct journal *j, const struct jentry *e)
{
	char name[64], tmp[80];
	journal_entry_name(e->seq, name, sizeof(name));
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	int fd = openat(j->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int rc = -errno;
		close(fd);
		unlinkat(j->dirfd, tmp, 0);
		return rc;
	}
	int rc = journal_entry_format(f, e);
	if (rc == 0 && fflush(f) != 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -EIO;
	if (rc == 0 && renameat(j->dirfd, tmp, j->dirfd, name) < 0)
		rc = -errno;
	if (rc == 0 && fsync(j->dirfd) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(j->dirfd, tmp, 0);
	return rc;
}

static int parse_field(struct jentry *e, const char *key, const char *val, int *bad, int *version)
{
	char *end;
	if (!strcmp(key, "imagesfs-intent")) {
		*version = (int)strtol(val, &end, 10);
		return 0;
	}
	if (!strcmp(key, "op")) {
		e->op = !strcmp(val, "rename")	  ? JOURNAL_RENAME
			: !strcmp(val, "replace") ? JOURNAL_REPLACE
			: !strcmp(val, "upload")  ? JOURNAL_UPLOAD
						  : 0;
		return 0;
	}
	if (!strcmp(key, "old_version") || !strcmp(key, "src_version")) {
		*(key[0] == 'o' ? &e->old_version : &e->src_version) = strtoll(val, &end, 10);
		*bad |= *end != 0;
		return 0;
	}
	if (!strcmp(key, "committed")) {
		e->committed = !strcmp(val, "1");
		return 0;
	}
	if (!strcmp(key, "rsu")) {
		e->rsu = !strcmp(val, "1");
		return 0;
	}
	if (!strcmp(key, "pin")) {
		e->pinned = strcmp(val, "-") != 0;
		return 0;
	}
	if (!strcmp(key, "newpin")) {
		e->new_pinned = strcmp(val, "-") != 0;
		return 0;
	}
	char **dst = !strcmp(key, "id")		? &e->id
		     : !strcmp(key, "src")	? &e->src
		     : !strcmp(key, "meta")	? &e->meta
		     : !strcmp(key, "newmeta")	? &e->new_meta
		     : !strcmp(key, "creator")	? &e->creator
		     : !strcmp(key, "filename") ? &e->filename
						: NULL;
	if (!dst || *dst)
		return -1; /* unknown or repeated field */
	*dst = unesc(val, bad);
	return 0;
}

/* Parses one entry from f (read to its "end" line); NULL when incomplete or malformed. */
struct jentry *journal_entry_parse(FILE *f, uint64_t seq)
{
	struct jentry *e = calloc(1, sizeof(*e));
	char line[JOURNAL_LINE_MAX];
	int bad = 0, done = 0, version = 0;
	if (!e)
		return NULL;
	e->seq = seq;
	while (!bad && !done && fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		if (n == 0 || line[n - 1] != '\n') {
			bad = 1;
			break;
		}
		line[n - 1] = 0;
		if (!strcmp(line, "end")) {
			done = 1;
			break;
		}
		char *sp = strchr(line, ' ');
		if (sp)
			*sp = 0;
		if (!sp || parse_field(e, line, sp + 1, &bad, &version) < 0)
			bad = 1;
	}
	if (bad || !done || version != 1 || !e->op || !e->id ||
	    (e->op == JOURNAL_RENAME && !e->src) || (e->op == JOURNAL_UPLOAD && !e->new_pinned)) {
		journal_entry_free(e);
		return NULL;
	}
	e->hash = journal_hash(e->id);
	e->src_hash = e->src ? journal_hash(e->src) : 0;
	e->src_doomed = e->committed; /* hidden at once, settled to "after" only */
	return e;
}

/* Parses one entry file; NULL when it is incomplete or malformed. */
struct jentry *journal_entry_read(int dirfd, const char *name, uint64_t seq)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct jentry *e = journal_entry_parse(f, seq);
	fclose(f);
	return e;
}

/* Appends e keeping the list sorted by seq (the order of loading and of begin); a new
 * entry (the newest, nearly always) goes to the tail at once. */
void journal_insert_locked(struct journal *j, struct jentry *e)
{
	struct jentry **pp = &j->head;
	if (j->tail && j->tail->seq < e->seq)
		pp = &j->tail->next;
	while (*pp && (*pp)->seq < e->seq)
		pp = &(*pp)->next;
	e->next = *pp;
	*pp = e;
	if (!e->next)
		j->tail = e;
	j->n++;
}

/*
 * journal_log.c - the write-back log: a JOURNAL_UPLOAD entry is one record holding its
 * intent and its bytes, appended to a segment file and made durable by one fdatasync that
 * concurrent appenders share (group commit).
 *
 * Why a log: an intent file plus a pin per upload cost close() four fsyncs (pin, pin/,
 * intent, journal/) and two file creations, and on a small file that is nearly all of
 * what close() costs. Appending to a file that already exists needs one fdatasync.
 *
 * On-disk format. Segments <journal dir>/wb-<16 hex number>.log, each a run of records:
 *
 *     offset  0  "imgsfsWB"   magic
 *             8  kind         u32 little-endian: 1 upload, 2 done
 *            12  text_len     u32: length of the text after the head
 *            16  seq          u64: the entry's sequence number (one series with .intent files)
 *            24  data_len     u64: length of the bytes after the text
 *            32  crc          u32: CRC-32 (IEEE) of the head with this field 0, text, data
 *            36  0            u32
 *            40  text         upload: the entry in journal.c's .intent format, to "end\n"
 *                data         upload: the bytes to upload
 *
 * A done record (kind 2, no text, no data) finishes the upload record of its seq; it is
 * written to the same segment. Replay reads each segment from its start and stops at the
 * first record that is incomplete or fails its CRC. Only a tail that was never fdatasync'd
 * can be so (appends are sequential, and each acknowledged record was made durable with
 * everything before it); that tail is cut off (ftruncate) before anything is appended.
 *
 * fsync points: a segment is created, and the directory fsync'd, before its first record
 * (once per segment); an upload record is fdatasync'd before journal_begin returns, a done
 * record before its entry leaves the table (so an upload that a later rm deleted is never
 * replayed). Removing a segment needs no fsync: one that reappears after a crash holds only
 * finished records.
 *
 * Working copies. Workers and readers use pin journal-<seq>-new, a plain file holding
 * exactly the bytes (the API streams a whole file from offset 0). At journal_begin it is
 * the caller's staged file itself, renamed into pin/ (cache_pin_adopt) and not fsync'd;
 * journal_log_load and a worker that finds it missing make it again from the record. Once
 * stored it becomes the cache's blob (cache_pin_commit, journal_settle.c). A pending
 * upload thus takes its size twice on disk, in the record and in the working copy.
 *
 * Segments. Records go to the active segment until it passes JOURNAL_SEG_MAX, then to a
 * new one; a segment with no unfinished upload is removed once it is not active. Every
 * open starts a new active segment (the old ones only take done records).
 */
#include "journal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JLOG_MAGIC "imgsfsWB"
#define JLOG_HEAD 40
#define JLOG_CHUNK (64 * 1024)
#define JLOG_TEXT_MAX (64 * JOURNAL_LINE_MAX)
#define JOURNAL_SEG_MAX (16ULL << 20)
enum { JLOG_UPLOAD = 1, JLOG_DONE = 2 };

struct jseg {
	uint64_t no;
	int fd;
	uint64_t size;	     /* end of the valid records: where the next one goes */
	size_t live;	     /* upload records without their done record */
	uint64_t wgen, sgen; /* records written / made durable (group commit) */
	int syncing, failed; /* failed: an fdatasync failed, nothing more goes here */
	struct jseg *next;
};

/* ---- CRC-32 and the head ------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_add(uint32_t crc, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 255] ^ (crc >> 8);
	return ~crc;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void head_encode(unsigned char *h, int kind, size_t tlen, uint64_t seq, uint64_t dlen)
{
	memcpy(h, JLOG_MAGIC, 8);
	put_le(h + 8, (uint64_t)kind, 4);
	put_le(h + 12, tlen, 4);
	put_le(h + 16, seq, 8);
	put_le(h + 24, dlen, 8);
	memset(h + 32, 0, 8);
}

static void seg_name(uint64_t no, char *buf, size_t len)
{
	snprintf(buf, len, JOURNAL_LOG_PREFIX "%016" PRIx64 JOURNAL_LOG_SUFFIX, no);
}

/* ---- writing ------------------------------------------------------------------- */

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w, n -= (size_t)w, off += (uint64_t)w;
	}
	return 0;
}

/* Reads exactly n bytes at off; a short file is -EIO. */
static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		p += r, n -= (size_t)r, off += (uint64_t)r;
	}
	return 0;
}

/* Writes one record at s->size: the head, text, then dlen bytes of fd from offset 0. A
 * record that fits one chunk is one pwrite. With log_lock held. */
static int record_write_locked(struct jseg *s, int kind, uint64_t seq, const char *text,
			       size_t tlen, int fd, uint64_t dlen)
{
	uint64_t at = s->size;
	size_t first = JLOG_HEAD + tlen, n = dlen < JLOG_CHUNK ? (size_t)dlen : JLOG_CHUNK;
	unsigned char *buf = malloc(first + n);
	if (!buf)
		return -ENOMEM;
	head_encode(buf, kind, tlen, seq, dlen);
	if (tlen)
		memcpy(buf + JLOG_HEAD, text, tlen);
	uint32_t crc = crc_add(0, buf, first);
	int rc = n ? pread_all(fd, buf + first, n, 0) : 0;
	if (rc == 0) { /* the first chunk carries the head and the text */
		crc = crc_add(crc, buf + first, n);
		if (n == dlen)
			put_le(buf + 32, crc, 4);
		rc = pwrite_all(s->fd, buf, first + n, at);
	}
	for (uint64_t done = n; rc == 0 && done < dlen; done += n) {
		n = dlen - done < JLOG_CHUNK ? (size_t)(dlen - done) : JLOG_CHUNK;
		if ((rc = pread_all(fd, buf, n, done)) == 0) {
			crc = crc_add(crc, buf, n);
			rc = pwrite_all(s->fd, buf, n, at + first + done);
		}
	}
	if (rc == 0 && dlen > JLOG_CHUNK) { /* several chunks: the CRC goes in last */
		put_le(buf, crc, 4);
		rc = pwrite_all(s->fd, buf, 4, at + 32);
	}
	free(buf);
	if (rc < 0) {
		if (ftruncate(s->fd, (off_t)at) < 0)
			s->failed = 1; /* a partial record stays: nothing may follow it */
		return rc;
	}
	s->size = at + first + dlen;
	return 0;
}

/* Waits until the records up to generation `gen` of s are on disk, running the fdatasync
 * itself when no other thread is (one fdatasync then covers every record written before
 * it started). With log_lock held; drops it during the fdatasync. */
static int sync_locked(struct journal *j, struct jseg *s, uint64_t gen)
{
	while (s->sgen < gen) {
		if (s->failed)
			return -EIO;
		if (s->syncing) {
			pthread_cond_wait(&j->log_cond, &j->log_lock);
			continue;
		}
		s->syncing = 1;
		uint64_t target = s->wgen;
		pthread_mutex_unlock(&j->log_lock);
		int rc = fdatasync(s->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&j->log_lock);
		s->syncing = 0;
		if (rc < 0)
			s->failed = 1; /* what it covered may be lost: fail all of it */
		else
			s->sgen = target;
		pthread_cond_broadcast(&j->log_cond);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void seg_free(struct jseg *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

/* Removes s (no unfinished upload left in it) from the list and the disk. */
static void seg_remove_locked(struct journal *j, struct jseg *s)
{
	char name[64];
	for (struct jseg **pp = &j->segs; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (j->active == s)
		j->active = NULL;
	seg_name(s->no, name, sizeof(name));
	unlinkat(j->dirfd, name, 0);
	seg_free(s);
}

/* A new active segment, durable before its first record; the old one goes if finished. */
static struct jseg *seg_new_locked(struct journal *j, int *rc)
{
	char name[64];
	struct jseg *s = calloc(1, sizeof(*s));
	if (!s) {
		*rc = -ENOMEM;
		return NULL;
	}
	s->no = j->next_seg++;
	seg_name(s->no, name, sizeof(name));
	s->fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->fd < 0 || fsync(j->dirfd) < 0) {
		*rc = -errno;
		if (s->fd >= 0)
			unlinkat(j->dirfd, name, 0);
		seg_free(s);
		return NULL;
	}
	if (j->active && j->active->live == 0 && !j->active->syncing)
		seg_remove_locked(j, j->active);
	s->next = j->segs;
	j->segs = s;
	j->active = s;
	return s;
}

int journal_log_append(struct journal *j, struct jentry *e, int fd, uint64_t size)
{
	char *text = NULL;
	size_t tlen = 0;
	FILE *f = open_memstream(&text, &tlen);
	if (!f)
		return -ENOMEM;
	int rc = journal_entry_format(f, e);
	if (fclose(f) != 0 && rc == 0)
		rc = -ENOMEM;
	if (rc < 0) {
		free(text);
		return rc;
	}
	pthread_once(&crc_once, crc_init);
	pthread_mutex_lock(&j->log_lock);
	struct jseg *s = j->active;
	if (!s || s->failed || s->size >= JOURNAL_SEG_MAX)
		s = seg_new_locked(j, &rc);
	if (s)
		rc = record_write_locked(s, JLOG_UPLOAD, e->seq, text, tlen, fd, size);
	if (s && rc == 0) {
		s->live++;
		e->seg = s;
		e->data_off = s->size - size;
		e->data_len = size;
		rc = sync_locked(j, s, ++s->wgen);
		if (rc < 0) { /* maybe on disk anyway: cancel it for the next replay, if we can */
			record_write_locked(s, JLOG_DONE, e->seq, NULL, 0, -1, 0);
			e->seg = NULL;
			s->live--;
		}
	}
	pthread_mutex_unlock(&j->log_lock);
	free(text);
	return rc;
}

int journal_log_done(struct journal *j, struct jentry *e)
{
	pthread_mutex_lock(&j->log_lock);
	struct jseg *s = e->seg;
	int rc = s ? record_write_locked(s, JLOG_DONE, e->seq, NULL, 0, -1, 0) : 0;
	if (s && rc == 0)
		rc = sync_locked(j, s, ++s->wgen);
	if (s && rc == 0) {
		e->seg = NULL;
		if (--s->live == 0 && s != j->active)
			seg_remove_locked(j, s);
	}
	pthread_mutex_unlock(&j->log_lock);
	return rc;
}

/* ---- working copies ------------------------------------------------------------ */

/* Copies len bytes of src from off into a new staged file and pins it as `name`. */
static int pin_copy(struct journal *j, const char *name, int src, uint64_t off, uint64_t len)
{
	int fd;
	char *path;
	int rc = cache_stage_open(j->cache, &fd, &path);
	if (rc < 0)
		return rc;
	char *buf = malloc(JLOG_CHUNK);
	if (!buf)
		rc = -ENOMEM;
	for (uint64_t done = 0; rc == 0 && done < len;) {
		size_t n = len - done < JLOG_CHUNK ? (size_t)(len - done) : JLOG_CHUNK;
		if ((rc = pread_all(src, buf, n, off + done)) == 0)
			rc = pwrite_all(fd, buf, n, done);
		done += n;
	}
	free(buf);
	close(fd);
	if (rc == 0)
		rc = cache_pin_adopt(j->cache, name, path);
	if (rc < 0)
		unlink(path);
	free(path);
	return rc;
}

int journal_log_working_copy(struct journal *j, struct jentry *e, int fd, char **staged)
{
	char pin[64];
	journal_newpin_name(e->seq, pin, sizeof(pin));
	if (staged && *staged && cache_pin_adopt(j->cache, pin, *staged) == 0) {
		free(*staged);
		*staged = NULL;
		return 0;
	}
	return pin_copy(j, pin, fd, 0, e->data_len);
}

int journal_log_rebuild(struct journal *j, struct jentry *e)
{
	char pin[64];
	journal_newpin_name(e->seq, pin, sizeof(pin));
	pthread_mutex_lock(&j->log_lock);
	int rc = e->seg ? pin_copy(j, pin, e->seg->fd, e->data_off, e->data_len) : -ENOENT;
	pthread_mutex_unlock(&j->log_lock);
	return rc;
}

/* ---- replay ---------------------------------------------------------------------- */

struct jload {
	struct jentry **ups; /* upload records, in the order read */
	size_t nups, capups;
	uint64_t *dones;
	size_t ndones, capdones;
};

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 64;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* Checks the CRC of the record at `at` (head h already read) by reading it through;
 * *text receives the text (malloc'd, NUL-terminated). 0, or -EIO for a bad record. */
static int record_check(int fd, uint64_t at, const unsigned char *h, char **text)
{
	size_t tlen = (size_t)get_le(h + 12, 4);
	uint64_t dlen = get_le(h + 24, 8);
	unsigned char h0[JLOG_HEAD];
	memcpy(h0, h, JLOG_HEAD);
	memset(h0 + 32, 0, 4);
	uint32_t crc = crc_add(0, h0, JLOG_HEAD);
	char *t = malloc(tlen + 1), *buf = malloc(JLOG_CHUNK);
	int rc = t && buf ? pread_all(fd, t, tlen, at + JLOG_HEAD) : -ENOMEM;
	if (rc == 0)
		crc = crc_add(crc, t, tlen);
	for (uint64_t done = 0; rc == 0 && done < dlen;) {
		size_t n = dlen - done < JLOG_CHUNK ? (size_t)(dlen - done) : JLOG_CHUNK;
		if ((rc = pread_all(fd, buf, n, at + JLOG_HEAD + tlen + done)) == 0)
			crc = crc_add(crc, buf, n);
		done += n;
	}
	free(buf);
	if (rc == 0 && crc != (uint32_t)get_le(h + 32, 4))
		rc = -EIO;
	if (rc < 0) {
		free(t);
		return rc == -ENOMEM ? rc : -EIO;
	}
	t[tlen] = 0;
	*text = t;
	return 0;
}

/* One upload record's text: the entry, or NULL when it does not parse. */
static struct jentry *record_entry(const char *text, uint64_t seq)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	if (!f)
		return NULL;
	struct jentry *e = journal_entry_parse(f, seq);
	fclose(f);
	return e && e->op == JOURNAL_UPLOAD ? e : (journal_entry_free(e), NULL);
}

/* An intact record whose text does not parse: its bytes go to lost_dir, never away. */
static void record_lost(struct journal *j, struct jseg *s, uint64_t seq, uint64_t off, uint64_t len)
{
	char pin[64], dest[4096];
	journal_newpin_name(seq, pin, sizeof(pin));
	snprintf(dest, sizeof(dest), "%s/%s", j->lost_dir, pin);
	mkdir(j->lost_dir, 0700);
	if (pin_copy(j, pin, s->fd, off, len) == 0 && cache_pin_export(j->cache, pin, dest) == 0) {
		journal_logf(j, 0,
			     "journal log record %016" PRIx64 " is damaged; its bytes are "
			     "kept in '%s'",
			     seq, dest);
		return;
	}
	cache_unpin(j->cache, pin);
	journal_logf(j, 0, "journal log record %016" PRIx64 " is damaged; keeping it", seq);
	s->live++; /* the segment stays */
}

/* Reads the records of s into ld; cuts a torn tail off. */
static int seg_scan(struct journal *j, struct jseg *s, struct jload *ld)
{
	struct stat st;
	if (fstat(s->fd, &st) < 0)
		return -errno;
	uint64_t at = 0, end = (uint64_t)st.st_size;
	unsigned char h[JLOG_HEAD];
	char *text;
	while (at + JLOG_HEAD <= end && pread_all(s->fd, h, JLOG_HEAD, at) == 0) {
		int kind = (int)get_le(h + 8, 4);
		uint64_t tlen = get_le(h + 12, 4), dlen = get_le(h + 24, 8),
			 seq = get_le(h + 16, 8);
		if (memcmp(h, JLOG_MAGIC, 8) || (kind != JLOG_UPLOAD && kind != JLOG_DONE) ||
		    tlen > JLOG_TEXT_MAX || dlen > end || at + JLOG_HEAD + tlen + dlen > end)
			break;
		int rc = record_check(s->fd, at, h, &text);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			break;
		if (kind == JLOG_DONE) {
			if (grow((void **)&ld->dones, &ld->capdones, ld->ndones, sizeof(uint64_t)))
				rc = -ENOMEM;
			else
				ld->dones[ld->ndones++] = seq;
		} else {
			struct jentry *e = record_entry(text, seq);
			if (!e)
				record_lost(j, s, seq, at + JLOG_HEAD + tlen, dlen);
			else if (grow((void **)&ld->ups, &ld->capups, ld->nups, sizeof(*ld->ups)))
				rc = -ENOMEM, journal_entry_free(e);
			else {
				e->seg = s;
				e->data_off = at + JLOG_HEAD + tlen;
				e->data_len = dlen;
				ld->ups[ld->nups++] = e;
			}
		}
		free(text);
		if (rc < 0)
			return rc;
		at += JLOG_HEAD + tlen + dlen;
	}
	if (at < end) {
		journal_logf(j, 1,
			     "journal log segment %016" PRIx64 ": cutting %" PRIu64
			     " bytes of a record never completed",
			     s->no, end - at);
		if (ftruncate(s->fd, (off_t)at) < 0 || fdatasync(s->fd) < 0)
			s->failed = 1; /* takes no done records: its entries settle next time */
	}
	s->size = at;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Opens every segment (oldest first) into j->segs; sets next_seg. */
static int seg_open_all(struct journal *j, struct jload *ld)
{
	int dfd = openat(j->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return -errno;
	}
	uint64_t *nos = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;
	size_t pl = strlen(JOURNAL_LOG_PREFIX), sl = strlen(JOURNAL_LOG_SUFFIX);
	while (rc == 0 && (de = readdir(d))) {
		char *endp;
		if (strlen(de->d_name) != pl + 16 + sl ||
		    strncmp(de->d_name, JOURNAL_LOG_PREFIX, pl) ||
		    strcmp(de->d_name + pl + 16, JOURNAL_LOG_SUFFIX))
			continue;
		uint64_t no = strtoull(de->d_name + pl, &endp, 16);
		if (endp != de->d_name + pl + 16)
			continue;
		if ((rc = grow((void **)&nos, &cap, n, sizeof(*nos))) == 0)
			nos[n++] = no;
	}
	closedir(d);
	if (n)
		qsort(nos, n, sizeof(*nos), cmp_u64);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char name[64];
		struct jseg *s = calloc(1, sizeof(*s));
		seg_name(nos[i], name, sizeof(name));
		if (!s)
			rc = -ENOMEM;
		else if ((s->fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0)
			rc = -errno, free(s);
		else {
			s->no = nos[i];
			s->next = j->segs;
			j->segs = s;
			rc = seg_scan(j, s, ld);
		}
		if (nos[i] >= j->next_seg)
			j->next_seg = nos[i] + 1;
	}
	free(nos);
	return rc;
}

int journal_log_load(struct journal *j)
{
	struct jload ld;
	memset(&ld, 0, sizeof(ld));
	pthread_once(&crc_once, crc_init);
	int rc = seg_open_all(j, &ld);
	if (ld.ndones)
		qsort(ld.dones, ld.ndones, sizeof(*ld.dones), cmp_u64);
	for (size_t i = 0; i < ld.nups; i++) {
		struct jentry *e = ld.ups[i];
		int done =
		    ld.ndones && bsearch(&e->seq, ld.dones, ld.ndones, sizeof(*ld.dones), cmp_u64);
		if (rc < 0 || done) {
			journal_entry_free(e);
			continue;
		}
		e->seg->live++;
		if (journal_log_rebuild(j, e) < 0)
			journal_logf(j, 0,
				     "cannot re-make the working copy of 'images/%s' from the "
				     "journal log; retrying at upload",
				     e->id);
		if (e->seq >= j->next_seq)
			j->next_seq = e->seq + 1;
		journal_insert_locked(j, e);
	}
	free(ld.ups);
	free(ld.dones);
	for (struct jseg *s = j->segs, *next; s; s = next) {
		next = s->next;
		if (rc == 0 && s->live == 0)
			seg_remove_locked(j, s);
	}
	while (rc < 0 && j->segs) { /* not read through: nothing may be removed */
		struct jseg *s = j->segs;
		j->segs = s->next;
		seg_free(s);
	}
	return rc;
}

void journal_log_close(struct journal *j)
{
	while (j->segs) {
		struct jseg *s = j->segs;
		if (s->live == 0)
			seg_remove_locked(j, s);
		else {
			j->segs = s->next;
			seg_free(s);
		}
	}
	j->active = NULL;
}

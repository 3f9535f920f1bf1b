/*
 * journal.c - the intent journal: opening and replaying it, pins, the entry table, begin,
 * finish and defer. The record format below is read and written by journal_entry.c.
 *
 * Modelled on SQLite's rollback journal (the undo information is made durable before the
 * change, and replayed at the next open) and git's lockfile.c (write a temp file, fsync,
 * rename into place, fsync the directory).
 *
 * On-disk format. One file per replace or rename entry, <dir>/<16 hex seq>.intent, text,
 * one field a line (a write-back upload is the same text inside a record of the write-back
 * log, <dir>/wb-<n>.log, with its bytes: journal_log.c; upload .intent files of an earlier
 * version are still loaded and finished):
 *
 *     imagesfs-intent 1
 *     op replace|rename|upload
 *     id <escaped>            replace: the image; rename: the destination
 *     src <escaped>|-         rename: the source
 *     old_version <decimal>   uploaded_ms of the image at id being replaced, 0 = none
 *     src_version <decimal>   rename, optional: uploaded_ms of the source image
 *     committed 1             rename, optional: the upload under id landed and the
 *                             rename was reported done (journal_defer): settle to after
 *     pin <name>|-            cache pin (cache_pin) holding that image's bytes
 *     newpin <name>|-         upload: pin holding the bytes to upload
 *     meta <escaped>|-        attributes to upload it back with
 *     newmeta <escaped>       upload, optional: metadata of the new image (else meta)
 *     creator <escaped>|-
 *     filename <escaped>|-
 *     rsu 0|1
 *     end
 *
 * Strings are percent-escaped (every byte outside '!'..'~', and '%' itself), so a field
 * is one line whatever the id holds. A file without the final "end" line, or that does
 * not parse, cannot come from a completed journal_begin (the rename publishes only whole
 * files): it is removed at open with a log line.
 *
 * fsync points, in order, for journal_begin of a replace or rename:
 *   1. the pin: file, then pin/ directory (cache_pin);
 *   2. <seq>.intent.tmp written and fsync'd;
 *   3. renamed to <seq>.intent, then the journal directory fsync'd.
 * Only after 3 does journal_begin return, and only then does the caller take the
 * destructive step. journal_finish unlinks <seq>.intent and fsyncs the directory, then
 * removes the pin: a crash in between leaves a pin no entry names, which journal_open
 * removes. A crash before 3 leaves a .tmp file (removed at open) and possibly a pin
 * (removed likewise); the destructive step was not taken, so nothing needs undoing.
 * A write-back upload has fewer: the pin of an image it replaces (1.), then its log record
 * fdatasync'd, the one fsync a new file's close() waits for (journal_log.c).
 *
 * What is pinned: the bytes of the image a replace (or a rename onto an existing image)
 * deletes, from before its delete until the entry is finished. A rename's source needs no
 * pin: its bytes are uploaded under the destination before the source is deleted. A
 * write-back upload keeps the bytes it will upload in its log record and, as its working
 * copy, in pin journal-<seq>-new (not fsync'd: made again from the record after a crash),
 * from before close() returns until they are stored; and the old image's bytes, pinned
 * and fsync'd, when it replaces one.
 *
 * Recovery order: journal_open loads every entry (oldest sequence first) as deferred;
 * journal_start's thread settles them oldest first, in the background, while the mount
 * serves requests (journal_settle.c).
 */
#include "journal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- escaping ------------------------------------------------------------------- */

/* ---- entries -------------------------------------------------------------------- */

int journal_entry_remove(struct journal *j, struct jentry *e)
{
	char name[64], pin[64];
	int rc;
	journal_entry_name(e->seq, name, sizeof(name));
	if (e->seg) { /* a logged upload: a done record (journal_log.c) */
		if ((rc = journal_log_done(j, e)) < 0)
			return rc;
	} else if (unlinkat(j->dirfd, name, 0) < 0 && errno != ENOENT) {
		return -errno;
	} else if (fsync(j->dirfd) < 0) {
		return -errno;
	}
	if (e->pinned) {
		journal_pin_name(e->seq, pin, sizeof(pin));
		cache_unpin(j->cache, pin);
	}
	if (e->new_pinned) {
		journal_newpin_name(e->seq, pin, sizeof(pin));
		cache_unpin(j->cache, pin);
	}
	return 0;
}

static int parse_seq(const char *name, uint64_t *seq, int *tmp)
{
	size_t n = strlen(name), sl = strlen(JOURNAL_SUFFIX);
	*tmp = n > 4 && !strcmp(name + n - 4, ".tmp");
	if (*tmp)
		return 0;
	if (n != 16 + sl || strcmp(name + 16, JOURNAL_SUFFIX))
		return -1;
	char *end;
	*seq = strtoull(name, &end, 16);
	return end == name + 16 ? 0 : -1;
}

/* An entry that does not parse: its pin (if any) goes to lost_dir, never away. */
static void damaged(struct journal *j, const char *name, uint64_t seq)
{
	char pin[64], dest[4096];
	int fd;
	journal_newpin_name(seq, pin, sizeof(pin));
	snprintf(dest, sizeof(dest), "%s/%s", j->lost_dir, pin);
	if (cache_pin_open(j->cache, pin, &fd) == 0) {
		close(fd);
		mkdir(j->lost_dir, 0700);
		cache_pin_export(j->cache, pin, dest);
	}
	journal_pin_name(seq, pin, sizeof(pin));
	snprintf(dest, sizeof(dest), "%s/%s", j->lost_dir, pin);
	if (cache_pin_open(j->cache, pin, &fd) == 0) {
		close(fd);
		mkdir(j->lost_dir, 0700);
		if (cache_pin_export(j->cache, pin, dest) < 0) {
			journal_logf(j, 0, "journal entry '%s' is damaged; keeping it", name);
			return;
		}
		journal_logf(j, 0, "journal entry '%s' is damaged; its bytes are kept in '%s'",
			     name, dest);
	} else {
		journal_logf(j, 0, "journal entry '%s' is damaged; removing it", name);
	}
	unlinkat(j->dirfd, name, 0);
}

static int load_entries(struct journal *j)
{
	int fd = openat(j->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		uint64_t seq = 0;
		int tmp;
		if (de->d_name[0] == '.' || parse_seq(de->d_name, &seq, &tmp) < 0)
			continue;
		if (tmp) { /* a begin that never completed: the step was not taken */
			unlinkat(j->dirfd, de->d_name, 0);
			continue;
		}
		struct jentry *e = journal_entry_read(j->dirfd, de->d_name, seq);
		if (!e) {
			damaged(j, de->d_name, seq);
			continue;
		}
		if (seq >= j->next_seq)
			j->next_seq = seq + 1;
		journal_insert_locked(j, e);
	}
	closedir(d);
	return 0;
}

struct pin_sweep {
	struct journal *j;
	char (*stale)[64];
	size_t n, cap;
};

static int pin_sweep_cb(const char *name, uint64_t size, void *arg)
{
	struct pin_sweep *s = arg;
	if (strncmp(name, "journal-", 8))
		return 0;
	for (struct jentry *e = s->j->head; e; e = e->next) {
		char pin[64], newpin[64];
		journal_pin_name(e->seq, pin, sizeof(pin));
		journal_newpin_name(e->seq, newpin, sizeof(newpin));
		if ((e->pinned && !strcmp(pin, name)) || (e->new_pinned && !strcmp(newpin, name)))
			return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		void *p = realloc(s->stale, cap * sizeof(*s->stale));
		if (!p)
			return -ENOMEM;
		s->stale = p;
		s->cap = cap;
	}
	snprintf(s->stale[s->n++], 64, "%s", name);
	return 0;
}

/* Removes pins of entries that no longer exist (crash inside begin or finish). */
static void sweep_pins(struct journal *j)
{
	struct pin_sweep s = {.j = j};
	cache_pin_list(j->cache, pin_sweep_cb, &s);
	for (size_t i = 0; i < s.n; i++)
		cache_unpin(j->cache, s.stale[i]);
	free(s.stale);
}

static int mkdir_0700(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int journal_open(const struct journal_config *cfg, struct journal **out)
{
	if (!cfg || !cfg->dir || !cfg->lost_dir || !cfg->cache)
		return -EINVAL;
	struct journal *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->api = cfg->api;
	j->cache = cfg->cache;
	j->log = cfg->log;
	j->on_upload = cfg->on_upload;
	j->on_restored = cfg->on_restored;
	j->arg = cfg->arg;
	j->next_seq = 1;
	j->dirfd = -1;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_mutex_init(&j->log_lock, NULL);
	pthread_cond_init(&j->log_cond, NULL);
	int rc = -ENOMEM;
	if (!(j->lost_dir = strdup(cfg->lost_dir)))
		goto fail;
	if ((rc = mkdir_0700(cfg->dir)) < 0)
		goto fail;
	j->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = load_entries(j)) < 0 || (rc = journal_log_load(j)) < 0)
		goto fail;
	sweep_pins(j);
	*out = j;
	return 0;
fail:
	journal_close(j);
	return rc;
}

static int pin_intent(struct journal *j, struct jentry *e, const struct journal_intent *in)
{
	char pin[64];
	int rc;
	if (in->old_fd >= 0) {
		journal_pin_name(e->seq, pin, sizeof(pin));
		if ((rc = cache_pin(j->cache, pin, in->old_fd, NULL)) < 0)
			return rc;
		e->pinned = 1;
	}
	return 0;
}

/* A write-back upload: one log record holding the intent and the bytes (one fdatasync,
 * journal_log.c), then the working copy the workers and readers use. */
static int begin_upload(struct journal *j, struct jentry *e, const struct journal_intent *in)
{
	struct stat st;
	e->new_pinned = 1; /* recorded: the working copy is journal-<seq>-new */
	int rc = fstat(in->new_fd, &st) < 0 ? -errno : 0;
	if (rc == 0)
		rc = journal_log_append(j, e, in->new_fd, (uint64_t)st.st_size);
	if (rc == 0 && (rc = journal_log_working_copy(j, e, in->new_fd, in->new_path)) < 0)
		journal_log_done(j, e); /* on disk already: cancelled */
	if (rc < 0)
		e->new_pinned = 0;
	return rc;
}

static void unpin_intent(struct journal *j, struct jentry *e)
{
	char pin[64];
	if (e->pinned) {
		journal_pin_name(e->seq, pin, sizeof(pin));
		cache_unpin(j->cache, pin);
	}
	if (e->new_pinned) {
		journal_newpin_name(e->seq, pin, sizeof(pin));
		cache_unpin(j->cache, pin);
	}
}

int journal_begin(struct journal *j, const struct journal_intent *in, uint64_t *seq)
{
	if (!in || !in->id || in->op < JOURNAL_REPLACE || in->op > JOURNAL_UPLOAD ||
	    (in->op == JOURNAL_RENAME && !in->src_id) ||
	    (in->op == JOURNAL_UPLOAD && in->new_fd < 0))
		return -EINVAL;
	struct jentry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->op = in->op;
	e->old_version = in->old_version;
	e->src_version = in->src_id ? in->src_version : 0;
	e->rsu = in->rsu;
	e->owned = in->op != JOURNAL_UPLOAD;
	e->hash = journal_hash(in->id);
	e->src_hash = in->src_id ? journal_hash(in->src_id) : 0;
	int rc = -ENOMEM;
	if (!(e->id = strdup(in->id)) || (in->src_id && !(e->src = strdup(in->src_id))) ||
	    (in->meta && !(e->meta = strdup(in->meta))) ||
	    (in->new_meta && !(e->new_meta = strdup(in->new_meta))) ||
	    (in->creator && !(e->creator = strdup(in->creator))) ||
	    (in->filename && !(e->filename = strdup(in->filename))))
		goto fail;
	pthread_mutex_lock(&j->lock);
	e->seq = j->next_seq++;
	pthread_mutex_unlock(&j->lock);
	if ((rc = pin_intent(j, e, in)) < 0 ||
	    (rc = in->op == JOURNAL_UPLOAD ? begin_upload(j, e, in) : journal_entry_write(j, e)) <
		0) {
		unpin_intent(j, e);
		goto fail;
	}
	*seq = e->seq; /* before the unlock: a worker may settle and free an upload at once */
	pthread_mutex_lock(&j->lock);
	e->next_ms = journal_now_ms();
	journal_insert_locked(j, e);
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return 0;
fail:
	journal_logf(j, 0, "cannot record the intent for '%s' in the journal: %s", in->id,
		     strerror(-rc));
	journal_entry_free(e);
	return rc;
}

struct jentry *journal_find_locked(struct journal *j, uint64_t seq)
{
	for (struct jentry *e = j->head; e; e = e->next)
		if (e->seq == seq)
			return e;
	return NULL;
}

/* Unlinks e from the list; the caller frees it. */
void journal_unlist_locked(struct journal *j, struct jentry *e)
{
	struct jentry *prev = NULL;
	for (struct jentry **pp = &j->head; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			if (j->tail == e)
				j->tail = prev;
			j->n--;
			break;
		}
	pthread_cond_broadcast(&j->cond);
}

void journal_finish(struct journal *j, uint64_t seq)
{
	pthread_mutex_lock(&j->lock);
	struct jentry *e = journal_find_locked(j, seq);
	pthread_mutex_unlock(&j->lock);
	if (!e) /* owned by the caller: nobody else unlists it */
		return;
	int rc = journal_entry_remove(j, e);
	if (rc < 0) /* stays on disk: the next mount settles it again (idempotent) */
		journal_logf(j, 1, "cannot remove journal entry of '%s': %s", e->id, strerror(-rc));
	pthread_mutex_lock(&j->lock);
	journal_unlist_locked(j, e);
	pthread_mutex_unlock(&j->lock);
	journal_entry_free(e);
}

void journal_defer(struct journal *j, uint64_t seq)
{
	pthread_mutex_lock(&j->lock);
	struct jentry *e = journal_find_locked(j, seq);
	int record = e && e->op == JOURNAL_RENAME && e->src_doomed && !e->committed;
	pthread_mutex_unlock(&j->lock);
	if (record) { /* still owned: the background leaves it alone while we write it */
		e->committed = 1;
		int rc = journal_entry_write(j, e);
		if (rc < 0)
			journal_logf(
			    j, 1,
			    "cannot record the rename of 'images/%s' to 'images/%s' as done "
			    "(%s): should the daemon stop before the old id is deleted, the "
			    "next mount may show it again",
			    e->src, e->id, strerror(-rc));
	}
	pthread_mutex_lock(&j->lock);
	if (e) {
		e->owned = 0;
		e->next_ms = journal_now_ms() + JOURNAL_BACKOFF_MIN_MS;
	}
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

int journal_hides(struct journal *j, const char *id)
{
	int hide = 0;
	if (!j || !id)
		return 0;
	pthread_mutex_lock(&j->lock);
	for (struct jentry *e = j->head; e && !hide; e = e->next)
		hide = e->op == JOURNAL_RENAME && e->src && !strcmp(e->src, id) && e->src_doomed;
	pthread_mutex_unlock(&j->lock);
	return hide;
}

size_t journal_pending(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	size_t n = j->n;
	pthread_mutex_unlock(&j->lock);
	return n;
}

int journal_upload_fd(struct journal *j, const char *id, int *fd, uint64_t *size)
{
	uint64_t seq = 0, h = journal_hash(id);
	pthread_mutex_lock(&j->lock);
	for (struct jentry *e = j->head; e; e = e->next)
		if (e->op == JOURNAL_UPLOAD && e->hash == h && !strcmp(e->id, id))
			seq = e->seq; /* the newest wins: the list is in sequence order */
	pthread_mutex_unlock(&j->lock);
	if (!seq)
		return -ENOENT;
	char pin[64];
	journal_newpin_name(seq, pin, sizeof(pin));
	int rc = cache_pin_open(j->cache, pin, fd);
	if (rc < 0)
		return -ENOENT; /* finished meanwhile: the caller reads the stored image */
	struct stat st;
	if (size)
		*size = fstat(*fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return 0;
}

size_t journal_pending_uploads(struct journal *j)
{
	size_t n = 0;
	pthread_mutex_lock(&j->lock);
	for (struct jentry *e = j->head; e; e = e->next)
		n += e->op == JOURNAL_UPLOAD;
	pthread_mutex_unlock(&j->lock);
	return n;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->running) {
		pthread_mutex_lock(&j->lock);
		j->stop = 1;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
		for (int i = 0; i < j->running; i++)
			pthread_join(j->threads[i], NULL);
	}
	while (j->head) {
		struct jentry *e = j->head;
		j->head = e->next;
		journal_entry_free(e);
	}
	j->tail = NULL;
	journal_log_close(j);
	pthread_cond_destroy(&j->log_cond);
	pthread_mutex_destroy(&j->log_lock);
	if (j->dirfd >= 0)
		close(j->dirfd);
	free(j->lost_dir);
	free(j->abandoned);
	free(j->failed_ids);
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
	free(j);
}

/*
 * journal_int.h - internals shared by journal.c (records, table) and journal_settle.c
 * (settling, the background thread). Only the journal and its unit test include it.
 */
#ifndef IMAGESFS_JOURNAL_INT_H
#define IMAGESFS_JOURNAL_INT_H

#include "journal.h"

#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_LINE_MAX 8192 /* an escaped field: 3 * API_MAX_ID_LEN and some */

struct jseg;

struct jentry {
	uint64_t seq;
	int op;
	char *id, *src, *meta, *creator, *filename;
	char *new_meta; /* JOURNAL_UPLOAD: metadata of the new image; NULL = meta */
	int rsu;
	int64_t old_version;
	int64_t src_version; /* rename: uploaded_ms of the source image, 0 = unknown */
	int committed;	     /* rename: recorded on disk as committed (journal_defer) */
	int pinned;	     /* pin journal-<seq>: the old image */
	int new_pinned;	     /* pin journal-<seq>-new: JOURNAL_UPLOAD's bytes */
	struct jseg *seg;    /* JOURNAL_UPLOAD: the log segment holding it (journal_log.c) */
	uint64_t data_off;   /* where its bytes start in seg, and their length */
	uint64_t data_len;
	uint64_t hash; /* of id, for per-id ordering (journal_settle.c) */
	uint64_t src_hash;
	/* Guarded by journal->lock. */
	int owned;		 /* a live operation drives it; the thread leaves it alone */
	int busy;		 /* the thread is settling it */
	int src_doomed;		 /* rename: the upload is done, src will be deleted (hidden) */
	int attempts;		 /* background attempts so far */
	int64_t failed_ms;	 /* monotonic ms the last background attempt failed, 0 = never */
	int64_t failed_began_ms; /* when that failed attempt began */
	int replayed;		 /* loaded at journal_open: left by an earlier run */
	int64_t next_ms;	 /* monotonic ms of the next background attempt */
	struct jentry *next;	 /* sorted by seq */
};

struct journal {
	struct api_client *api;
	struct cache *cache;
	void (*log)(int level, const char *msg);
	void (*on_upload)(void *arg, const char *id, const struct api_image *img, int fd);
	void (*on_restored)(void *arg, const struct api_image *img);
	void *arg;
	char *lost_dir;
	int dirfd;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* entries added, deferred, finished; stop */
	struct jentry *head; /* guarded by lock */
	struct jentry *tail; /* guarded by lock: the last of the list */
	size_t n;	     /* guarded by lock */
	uint64_t next_seq;   /* guarded by lock */
	char *abandoned;     /* guarded by lock: "images/<id>\n" lines since journal_wait */
	size_t abandoned_len;
	char *failed_ids; /* guarded by lock: "<id>\n" of abandoned uploads (wait_id) */
	size_t failed_len;
	/* The write-back log (journal_log.c). */
	pthread_mutex_t log_lock;
	pthread_cond_t log_cond; /* a group commit ended */
	struct jseg *segs;	 /* guarded by log_lock */
	struct jseg *active;	 /* guarded by log_lock: where records are appended */
	uint64_t next_seg;	 /* guarded by log_lock */

	pthread_t threads[JOURNAL_WORKERS];
	int running, stop; /* guarded by lock */
};

void journal_logf(struct journal *j, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int64_t journal_now_ms(void);
void journal_entry_free(struct jentry *e);
void journal_entry_name(uint64_t seq, char *buf, size_t len);
void journal_pin_name(uint64_t seq, char *buf, size_t len);
void journal_newpin_name(uint64_t seq, char *buf, size_t len);
uint64_t journal_hash(const char *s);
int journal_entry_write(struct journal *j, const struct jentry *e);
int journal_entry_remove(struct journal *j, struct jentry *e);
void journal_insert_locked(struct journal *j, struct jentry *e);
struct jentry *journal_find_locked(struct journal *j, uint64_t seq);
int journal_entry_format(FILE *f, const struct jentry *e);
struct jentry *journal_entry_parse(FILE *f, uint64_t seq);
struct jentry *journal_entry_read(int dirfd, const char *name, uint64_t seq);

/* journal_log.c: the write-back log. */
#define JOURNAL_LOG_PREFIX "wb-"
#define JOURNAL_LOG_SUFFIX ".log"
/* Loads the unfinished uploads of every segment into the table (with their working copies
 * re-made from the log) and removes segments with none left. */
int journal_log_load(struct journal *j);
/* Appends e (an upload: its intent and the size bytes of fd) and returns once it is on
 * disk (fdatasync, shared by concurrent callers). */
int journal_log_append(struct journal *j, struct jentry *e, int fd, uint64_t size);
/* The working copy of a logged upload (pin journal-<seq>-new): *staged (a path from
 * cache_stage_open holding fd's bytes; taken over and set to NULL) renamed into pin/, or
 * else a copy of fd. */
int journal_log_working_copy(struct journal *j, struct jentry *e, int fd, char **staged);
/* Makes the working copy of e again from its record. */
int journal_log_rebuild(struct journal *j, struct jentry *e);
/* Records e as finished, durably; a segment with no unfinished upload left is removed. */
int journal_log_done(struct journal *j, struct jentry *e);
void journal_log_close(struct journal *j);
void journal_unlist_locked(struct journal *j, struct jentry *e);

#endif

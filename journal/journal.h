/*
 * journal.h - durable intent journal for the destructive steps of replace and rename.
 *
 * The Images API cannot replace bytes under an id, so a replace is delete-then-upload and
 * a rename is upload-under-the-new-id-then-delete-the-old-id. Before the first destructive
 * step the caller records an intent (journal_begin): on return it is on disk (fsync'd,
 * file and directory) with the bytes needed to undo it pinned in the cache. The entry is
 * finished only once the account is in one of the two states the operation allows:
 *
 *   op        before                           after
 *   replace   id holds the old image           id holds the new image
 *   rename    src holds the image, dst holds   dst holds the image (src's bytes and
 *             its old image (or nothing)       metadata), src is gone
 *
 * Which of the two an unfinished entry settles to is decided by reading the account
 * (journal.c "Settling"), so settling is idempotent and needs no record of which HTTP
 * requests ran. No FUSE types; the journal calls api/ and cache/ only.
 *
 * Thread-safety: every function may be called from any thread. The journal's lock is
 * never held across a network call, disk I/O of an entry, or a call into the caller.
 */
#ifndef IMAGESFS_JOURNAL_H
#define IMAGESFS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "cache.h"

struct journal;

/* JOURNAL_UPLOAD is a write-back upload (-o writeback): bytes staged and acknowledged
 * to the writer, uploaded by the journal's workers (replacing the image at id, if any). */
enum journal_op { JOURNAL_REPLACE = 1, JOURNAL_RENAME = 2, JOURNAL_UPLOAD = 3 };

/* What journal_settle found or made the account hold. */
enum journal_state { JOURNAL_BEFORE = 1, JOURNAL_AFTER = 2, JOURNAL_ABANDONED = 3 };

/* Backoff of background retries: JOURNAL_BACKOFF_MIN_MS doubling up to ..._MAX_MS. */
#define JOURNAL_BACKOFF_MIN_MS 500
#define JOURNAL_BACKOFF_MAX_MS 8000
/* Worker threads settling entries at once (write-back uploads run in parallel, at most
 * one entry per id at a time, in sequence order per id). */
#define JOURNAL_WORKERS 8

struct journal_config {
	const char *dir;	/* journal directory, created 0700 (e.g. <cache_dir>/journal) */
	const char *lost_dir;	/* where abandoned bytes go (e.g. <cache_dir>/lost+found) */
	struct api_client *api; /* borrowed; outlives the journal */
	struct cache *cache;	/* borrowed; holds the pins */
	/* One log line; level 0 error, 1 warning, 2 info, 3 debug. NULL = silent. */
	void (*log)(int level, const char *msg);
	/* Called by a worker when a JOURNAL_UPLOAD entry is settled, before waiters on it
	 * wake: img is the stored image (NULL: abandoned, the old image, if any, is back),
	 * fd reads the uploaded bytes (-1 when img is NULL). Nullable. */
	void (*on_upload)(void *arg, const char *id, const struct api_image *img, int fd);
	/* Called when settling put an old image back (the account had none at its id): img is
	 * the restored image. Called without the journal's lock. Nullable. */
	void (*on_restored)(void *arg, const struct api_image *img);
	void *arg;
};

/* The intent of one operation. Strings are borrowed for the call. */
struct journal_intent {
	int op;		     /* enum journal_op */
	const char *id;	     /* replace: the image; rename: the destination id */
	const char *src_id;  /* rename: the source id (deleted last); NULL for replace */
	int64_t src_version; /* rename: uploaded_ms of the source image; 0 = unknown */
	int64_t old_version; /* uploaded_ms of the image at id being replaced; 0 = none */
	int old_fd;	     /* its bytes (read from offset 0) to pin; -1 = none */
	int new_fd;	     /* JOURNAL_UPLOAD: the bytes to upload (logged); else -1 */
	/* JOURNAL_UPLOAD, nullable: *new_path is the staged file (cache_stage_open) holding
	 * new_fd's bytes; the journal takes it over as its working copy (renamed, *new_path
	 * freed and set to NULL) instead of copying. The caller must not write through new_fd
	 * afterwards. */
	char **new_path;
	/* Attributes to upload the old image back with (replace, or rename onto an image);
	 * for JOURNAL_UPLOAD also those of the new image (a replace keeps them). meta is the
	 * metadata object exactly as it is to be stored (for the old image: with its own
	 * stamp, api_stamp.h). */
	const char *meta, *creator, *filename;
	int rsu;
	/* JOURNAL_UPLOAD: the metadata object to store with the new bytes (their stamp: new
	 * size and mtime); NULL = meta. Never used for the old image. */
	const char *new_meta;
};

/* Opens (creating) cfg->dir and loads unfinished entries left by an earlier run; they are
 * settled by the background thread once journal_start runs. Pins no entry refers to
 * (a crash between pinning and recording) are removed. 0 or -errno; *out on success. */
int journal_open(const struct journal_config *cfg, struct journal **out);
/* Starts the background thread that settles deferred and replayed entries, with backoff
 * (the API client's rate limiter bounds the request rate). */
int journal_start(struct journal *j);
/* Stops the thread (waiting for an attempt in flight) and frees j. Entries not finished
 * stay on disk for the next journal_open. NULL is a no-op. */
void journal_close(struct journal *j);

/* Records an intent durably: pins in->old_fd's bytes (if any), writes the entry and fsyncs
 * it and the directory; a JOURNAL_UPLOAD is instead one record of the write-back log (the
 * intent and new_fd's bytes, one fdatasync shared with concurrent callers). The caller owns
 * a replace or rename entry (the background leaves it alone) until journal_finish or
 * journal_defer. 0 and *seq, or -errno (nothing recorded: the caller must not take the
 * destructive step, nor report the upload as journaled). */
int journal_begin(struct journal *j, const struct journal_intent *in, uint64_t *seq);
/* The account is in an allowed state: removes the entry, then its pin. */
void journal_finish(struct journal *j, uint64_t seq);
/* Brings the account to an allowed state now (see "Settling" in journal.c) and finishes
 * the entry. Returns the enum journal_state reached (> 0), or -errno when it cannot yet
 * (the entry stays, still owned by the caller). */
int journal_settle(struct journal *j, uint64_t seq);
/* A rename's upload under the destination succeeded: from now on the source is hidden
 * (journal_hides) and the entry settles to "after" only: the source is deleted whatever
 * became of the destination since (a later rm or mv of it does not undo the rename). */
void journal_mark_committed(struct journal *j, uint64_t seq);
/* Hands an owned entry to the background thread, which settles it with backoff. A
 * committed rename is first recorded so (the entry rewritten and fsync'd), so that a replay
 * after a crash settles it to "after" only as well; if that write fails, a log line says so
 * and only a crash before the source is deleted could then bring the source back. */
void journal_defer(struct journal *j, uint64_t seq);

/* 1 while an unfinished rename entry will delete id (the mount must not show it), else 0. */
int journal_hides(struct journal *j, const char *id);

/* JOURNAL_UPLOAD entries are never owned: journal_begin queues them for the workers.
 * A read-only fd on the bytes of the newest unfinished upload of id: 0, or -ENOENT. */
int journal_upload_fd(struct journal *j, const char *id, int *fd, uint64_t *size);
/* Waits until no unfinished entry names id (retrying deferred ones at once), at most
 * timeout_ms: 0 when the last upload of id was stored (or there was none), -EIO when it
 * was abandoned (journal_settle.c), -ETIMEDOUT. */
int journal_wait_id(struct journal *j, const char *id, int64_t timeout_ms);
/* As journal_wait_id, for an operation that must follow id's pending uploads and would
 * otherwise wait out the timeout while the server refuses them: also returns -ETIMEDOUT as
 * soon as an attempt at an entry naming id fails after the call began (the server is down,
 * 429, ...: the entry stays queued and is retried with backoff). So the caller fails within
 * about one retry budget of the API client, as it would without write-back. */
int journal_wait_stored(struct journal *j, const char *id, int64_t timeout_ms);

/* Unfinished entries (owned ones included); of them, write-back uploads. */
size_t journal_pending(struct journal *j);
size_t journal_pending_uploads(struct journal *j);
/* Waits until no entry is unfinished, at most timeout_ms (deferred entries are retried
 * at once, without their backoff). Returns 0 when none is left and none was abandoned
 * since the last call; else -ETIMEDOUT (entries left) or -EIO (only abandoned ones) with
 * *failed (malloc'd, caller frees; nullable) set to one "images/<id>\n" line per entry
 * still unfinished and per entry abandoned since the last call; -ENOMEM. */
int journal_wait(struct journal *j, int64_t timeout_ms, char **failed);

/* For tests: the on-disk name of an entry ("<16 hex seq>.intent"). */
#define JOURNAL_SUFFIX ".intent"

#endif

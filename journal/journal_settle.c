/*
 * journal_settle.c - settling entries: bringing the account to an allowed state.
 *
 * Settling reads the account instead of trusting a record of which requests ran, so it is
 * idempotent and works the same live, in the background and after a crash:
 *
 *   replace (id, old_version, pin)
 *     GET id finds an image       -> done: before (version == old_version: the delete
 *                                    never ran) or after (the new upload landed)
 *     GET id finds nothing         -> upload the pinned old bytes with the old metadata,
 *                                    creator and requireSignedURLs under id -> before
 *   rename (src -> dst, old_version, pin)
 *     committed (mv returned 0)    -> after, whatever dst holds now (a later rm or mv of
 *                                    dst must not bring src back): DELETE src
 *     GET dst finds the old image  -> before (the destination was never deleted, the
 *                                    source never touched)
 *     GET dst finds another image  -> the upload landed: DELETE src (404 counts) -> after
 *     (DELETE src: when the entry knows src's version, a GET first; another image at src
 *     since, or none, counts as deleted)
 *     GET dst finds nothing         -> the upload did not land, src was not touched;
 *                                    upload the pinned old destination back if there
 *                                    was one -> before
 *
 *   upload (id, new bytes, old_version, pin of the old image if it replaces one)
 *     GET id finds the old image   -> DELETE it, then upload the new bytes -> after
 *     GET id finds another image   -> the upload landed (its reply was lost) -> after
 *     GET id finds nothing          -> upload the new bytes -> after
 *     the API refuses the new bytes -> the old image is uploaded back if there was one,
 *                                     the new bytes go to lost_dir -> abandoned
 *
 * Any other failure (server down, 429, timeouts) leaves the entry for a later attempt.
 * Abandoned, only when the API refuses the pinned bytes themselves (400/415/413: EINVAL,
 * EFBIG; retrying can never succeed): the pin is moved to lost_dir as
 * "<id with '/' as '%2F'>.<seq>" and one log line names it.
 *
 * JOURNAL_WORKERS threads settle deferred and queued entries oldest first, several at
 * once but never two entries that name the same id (either side of a rename), so the
 * operations on one path run in the order they were journaled; with
 * backoff from JOURNAL_BACKOFF_MIN_MS doubling to JOURNAL_BACKOFF_MAX_MS; every request
 * goes through the API client, whose rate limiter bounds the rate with the mount's own
 * traffic. One log line per entry it finishes or abandons.
 */
#include "journal_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Uploads a pin of e (the old image, or with `fresh` the write-back bytes) under e->id;
 * out (nullable) receives the stored image. */
static int upload_pin(struct journal *j, struct jentry *e, int fresh, struct api_image *out,
		      struct api_err *err)
{
	char pin[64];
	int fd;
	if (fresh)
		journal_newpin_name(e->seq, pin, sizeof(pin));
	else
		journal_pin_name(e->seq, pin, sizeof(pin));
	int rc = cache_pin_open(j->cache, pin, &fd);
	if (rc == -ENOENT && fresh && e->seg && journal_log_rebuild(j, e) == 0)
		rc = cache_pin_open(j->cache, pin, &fd); /* the working copy went missing */
	if (rc < 0)
		return rc;
	struct api_upload up = {
	    .id = e->id,
	    .fd = fd,
	    .filename = e->filename,
	    .metadata_json = fresh && e->new_meta ? e->new_meta : e->meta,
	    .creator = e->creator,
	    .require_signed_urls = e->rsu ? 1 : -1,
	};
	struct api_image img;
	rc = api_image_upload(j->api, &up, &img, err);
	close(fd);
	if (rc == -EEXIST) /* an image is there again: someone's, or ours */
		rc = out ? api_image_get(j->api, e->id, out, err) : 0;
	else if (rc == 0 && out)
		*out = img;
	else if (rc == 0)
		api_image_release(&img);
	return rc;
}

static void lost_name(const struct jentry *e, const char *dir, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "%s/", dir);
	for (const char *p = e->id; *p && o + 4 < len; p++) {
		if (*p == '/' || *p == '%')
			o += (size_t)snprintf(buf + o, len - o, "%%%02X", (unsigned char)*p);
		else
			buf[o++] = *p;
	}
	snprintf(buf + (o < len ? o : len - 1), len - (o < len ? o : len - 1), ".%llu",
		 (unsigned long long)e->seq);
}

static int abandon(struct journal *j, const struct jentry *e, int fresh, const struct api_err *err)
{
	char dest[4096], pin[64], why[300];
	if (fresh)
		journal_newpin_name(e->seq, pin, sizeof(pin));
	else
		journal_pin_name(e->seq, pin, sizeof(pin));
	mkdir(j->lost_dir, 0700);
	lost_name(e, j->lost_dir, dest, sizeof(dest));
	int rc = cache_pin_export(j->cache, pin, dest);
	if (rc < 0)
		return rc; /* kept pinned: retried, never dropped */
	snprintf(why, sizeof(why), "HTTP %ld, code %d: %s", err->http_status, err->cf_code,
		 err->message);
	journal_logf(
	    j, 0, "abandoned %s 'images/%s': the API refuses its bytes (%s); they are kept in '%s'",
	    fresh ? "uploading" : "restoring", e->id, why, dest);
	pthread_mutex_lock(&j->lock);
	size_t need = strlen(e->id) + 9;
	char *p = realloc(j->abandoned, j->abandoned_len + need + 1);
	if (p) {
		j->abandoned = p;
		j->abandoned_len +=
		    (size_t)snprintf(p + j->abandoned_len, need + 1, "images/%s\n", e->id);
	}
	if (fresh && (p = realloc(j->failed_ids, j->failed_len + need + 1))) {
		j->failed_ids = p;
		j->failed_len += (size_t)snprintf(p + j->failed_len, need + 1, "%s\n", e->id);
	}
	pthread_mutex_unlock(&j->lock);
	return 0;
}

/* Nothing at id: put the pinned old image back (or nothing was there to begin with). */
static int settle_missing(struct journal *j, struct jentry *e)
{
	struct api_err err;
	struct api_image img;
	if (!e->pinned)
		return JOURNAL_BEFORE;
	int rc = upload_pin(j, e, 0, &img, &err);
	if (rc == 0) {
		if (j->on_restored)
			j->on_restored(j->arg, &img);
		api_image_release(&img);
		return JOURNAL_BEFORE;
	}
	if ((rc == -EINVAL || rc == -EFBIG) && err.http_status >= 400 && err.http_status < 500 &&
	    abandon(j, e, 0, &err) == 0)
		return JOURNAL_ABANDONED;
	return rc;
}

/* The rename's upload landed: delete the source image (the version renamed, when the entry
 * knows it: another image at that id since is not ours to delete). */
static int settle_rename_after(struct journal *j, struct jentry *e)
{
	struct api_err err;
	struct api_image img;
	pthread_mutex_lock(&j->lock);
	e->src_doomed = 1;
	pthread_mutex_unlock(&j->lock);
	int rc = e->src_version ? api_image_get(j->api, e->src, &img, &err) : 0;
	if (rc == -ENOENT)
		return JOURNAL_AFTER;
	if (rc < 0)
		return rc;
	if (e->src_version) {
		int other = img.uploaded_ms != e->src_version;
		api_image_release(&img);
		if (other)
			return JOURNAL_AFTER;
	}
	rc = api_image_delete(j->api, e->src, &err);
	if (rc == 0 || rc == -ENOENT)
		return JOURNAL_AFTER;
	return rc;
}

static int refused(int rc, const struct api_err *err)
{
	return (rc == -EINVAL || rc == -EFBIG) && err->http_status >= 400 && err->http_status < 500;
}

/* Write-back: the new bytes end up under id (or, refused, the old image is back). */
static int settle_upload(struct journal *j, struct jentry *e, struct api_image *out)
{
	struct api_err err;
	int rc;
	if (!e->replayed && e->attempts == 0) {
		/* First attempt of this run: the account is as staging saw it, no GET needed
		 * (an upload whose reply is lost is recognised by api_image_upload). */
		if (e->old_version && (rc = api_image_delete(j->api, e->id, &err)) < 0 &&
		    rc != -ENOENT)
			return rc;
		goto upload;
	}
	rc = api_image_get(j->api, e->id, out, &err);
	if (rc == 0 && !(e->old_version && out->uploaded_ms == e->old_version))
		return JOURNAL_AFTER; /* stored (a lost reply, or the retry of one) */
	if (rc == 0) {
		api_image_release(out);
		if ((rc = api_image_delete(j->api, e->id, &err)) < 0 && rc != -ENOENT)
			return rc;
	} else if (rc != -ENOENT) {
		return rc;
	}
upload:
	rc = upload_pin(j, e, 1, out, &err);
	if (rc == 0)
		return JOURNAL_AFTER;
	/* -EEXIST: another image (not these bytes) holds the id, which the entry did not
	 * expect; a retry's GET would take it for ours. Keep the bytes, as for a refusal. */
	if (!refused(rc, &err) && rc != -EEXIST)
		return rc;
	struct api_err oerr;
	int orc = e->pinned ? upload_pin(j, e, 0, NULL, &oerr) : 0;
	if (orc < 0 && !refused(orc, &oerr))
		return orc; /* the old image is not back yet: retried */
	return abandon(j, e, 1, &err) == 0 ? JOURNAL_ABANDONED : -EIO;
}

/* Calls on_upload with the stored bytes (before the entry leaves the table); the working
 * copy of stored bytes becomes the cache's blob of the new version (no copy). */
static void notify_upload(struct journal *j, const struct jentry *e, const struct api_image *img)
{
	char pin[64];
	int fd = -1;
	journal_newpin_name(e->seq, pin, sizeof(pin));
	if (img && cache_pin_open(j->cache, pin, &fd) < 0)
		fd = -1;
	if (fd >= 0)
		cache_pin_commit(j->cache, pin, e->id, img->uploaded_ms);
	if (j->on_upload)
		j->on_upload(j->arg, e->id, img, fd);
	if (fd >= 0)
		close(fd);
}

/* Reads the account and finishes what the entry needs; > 0 state or -errno. */
static int settle_entry(struct journal *j, struct jentry *e)
{
	if (e->op == JOURNAL_UPLOAD) {
		struct api_image img;
		memset(&img, 0, sizeof(img));
		int rc = settle_upload(j, e, &img);
		if (rc > 0)
			notify_upload(j, e, rc == JOURNAL_AFTER ? &img : NULL);
		api_image_release(&img);
		return rc;
	}
	pthread_mutex_lock(&j->lock);
	int committed = e->op == JOURNAL_RENAME && e->src_doomed;
	pthread_mutex_unlock(&j->lock);
	if (committed) /* the destination may have been removed since: never "before" */
		return settle_rename_after(j, e);
	struct api_image img;
	struct api_err err;
	int rc = api_image_get(j->api, e->id, &img, &err);
	if (rc == -ENOENT)
		return settle_missing(j, e);
	if (rc < 0)
		return rc;
	int same = e->old_version && img.uploaded_ms == e->old_version;
	api_image_release(&img);
	if (e->op == JOURNAL_REPLACE || same)
		return same ? JOURNAL_BEFORE : JOURNAL_AFTER;
	return settle_rename_after(j, e);
}

int journal_settle(struct journal *j, uint64_t seq)
{
	pthread_mutex_lock(&j->lock);
	struct jentry *e = journal_find_locked(j, seq);
	pthread_mutex_unlock(&j->lock);
	if (!e)
		return -ENOENT;
	int rc = settle_entry(j, e);
	if (rc > 0)
		journal_finish(j, seq);
	return rc;
}

void journal_mark_committed(struct journal *j, uint64_t seq)
{
	pthread_mutex_lock(&j->lock);
	struct jentry *e = journal_find_locked(j, seq);
	if (e)
		e->src_doomed = 1;
	pthread_mutex_unlock(&j->lock);
}

static void log_settled(struct journal *j, const struct jentry *e, int state)
{
	if (state == JOURNAL_ABANDONED)
		return; /* abandon() logged it */
	if (e->op == JOURNAL_UPLOAD) {
		if (e->attempts > 0 || e->replayed)
			journal_logf(j, 1, "recovered 'images/%s': the pending upload is stored",
				     e->id);
		return;
	}
	if (e->op == JOURNAL_REPLACE)
		journal_logf(j, 1, "recovered 'images/%s': %s", e->id,
			     state == JOURNAL_BEFORE ? "the previous image is back"
						     : "the replace had completed");
	else if (state == JOURNAL_AFTER)
		journal_logf(j, 1,
			     "recovered the rename of 'images/%s' to 'images/%s': the old "
			     "id is deleted",
			     e->src, e->id);
	else
		journal_logf(j, 1,
			     "recovered the rename of 'images/%s' to 'images/%s': it had "
			     "not happened, both are as before",
			     e->src, e->id);
}

/* Bloom filter of the ids named by entries earlier in the list: an entry is eligible
 * only when none of its ids is (false positives only delay it until those finish). */
#define ORDER_BITS 4096
static int order_test_set(uint64_t *bits, uint64_t h)
{
	if (!h)
		return 0;
	unsigned a = (unsigned)(h % ORDER_BITS), b = (unsigned)((h >> 32) % ORDER_BITS);
	int hit = (bits[a / 64] >> (a % 64) & 1) && (bits[b / 64] >> (b % 64) & 1);
	bits[a / 64] |= 1ULL << (a % 64);
	bits[b / 64] |= 1ULL << (b % 64);
	return hit;
}

/* The oldest eligible entry that is due, else the eligible one due soonest. The scan stops
 * at the first due one: with thousands of queued uploads, that is the first not busy. */
static struct jentry *next_due_locked(struct journal *j, int64_t *wait_ms)
{
	uint64_t bits[ORDER_BITS / 64];
	struct jentry *best = NULL;
	int64_t now = journal_now_ms();
	memset(bits, 0, sizeof(bits));
	for (struct jentry *e = j->head; e; e = e->next) {
		int blocked = order_test_set(bits, e->hash);
		blocked |= order_test_set(bits, e->src_hash);
		if (blocked || e->owned || e->busy)
			continue;
		if (!best || e->next_ms < best->next_ms)
			best = e;
		if (e->next_ms <= now)
			break;
	}
	*wait_ms = best ? best->next_ms - now : -1;
	return best;
}

static void wait_locked(struct journal *j, int64_t ms)
{
	if (ms < 0) {
		pthread_cond_wait(&j->cond, &j->lock);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&j->cond, &j->lock, &ts);
}

static void *settle_thread(void *arg)
{
	struct journal *j = arg;
	pthread_mutex_lock(&j->lock);
	while (!j->stop) {
		int64_t wait;
		struct jentry *e = next_due_locked(j, &wait);
		if (!e || wait > 0) {
			wait_locked(j, e ? wait : -1);
			continue;
		}
		e->busy = 1;
		int64_t began = journal_now_ms();
		pthread_mutex_unlock(&j->lock);
		int rc = settle_entry(j, e);
		if (rc > 0) { /* off disk first: a waiter woken by the unlist sees no pin left */
			int drc = journal_entry_remove(j, e);
			if (drc < 0)
				journal_logf(j, 1, "cannot remove journal entry of '%s': %s", e->id,
					     strerror(-drc));
			log_settled(j, e, rc);
			pthread_mutex_lock(&j->lock);
			journal_unlist_locked(j, e);
			pthread_mutex_unlock(&j->lock);
			journal_entry_free(e);
			pthread_mutex_lock(&j->lock);
			continue;
		}
		pthread_mutex_lock(&j->lock);
		e->busy = 0;
		int shift = e->attempts < 5 ? e->attempts : 5;
		int64_t backoff = (int64_t)JOURNAL_BACKOFF_MIN_MS << shift;
		if (backoff > JOURNAL_BACKOFF_MAX_MS)
			backoff = JOURNAL_BACKOFF_MAX_MS;
		if (e->attempts++ == 0)
			journal_logf(j, 3,
				     "journal entry of 'images/%s' not settled yet (%s); "
				     "retrying in the background",
				     e->id, strerror(-rc));
		e->next_ms = journal_now_ms() + backoff;
		e->failed_ms = journal_now_ms();
		e->failed_began_ms = began;
		pthread_cond_broadcast(&j->cond); /* journal_wait_stored returns on it */
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

int journal_start(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	int64_t now = journal_now_ms();
	for (struct jentry *e = j->head; e; e = e->next)
		e->next_ms = now, e->replayed = 1;
	pthread_mutex_unlock(&j->lock);
	for (int i = 0; i < JOURNAL_WORKERS; i++) {
		int rc = pthread_create(&j->threads[i], NULL, settle_thread, j);
		if (rc != 0) {
			journal_logf(j, 0, "cannot start journal worker: %s", strerror(rc));
			return i ? 0 : -rc;
		}
		j->running = i + 1;
	}
	return 0;
}

static char *failed_text_locked(struct journal *j)
{
	size_t len = j->abandoned_len + 1;
	for (struct jentry *e = j->head; e; e = e->next)
		len += strlen(e->id) + 9;
	char *s = malloc(len), *o = s;
	if (!s)
		return NULL;
	*o = 0;
	for (struct jentry *e = j->head; e; e = e->next)
		o += snprintf(o, len - (size_t)(o - s), "images/%s\n", e->id);
	if (j->abandoned)
		snprintf(o, len - (size_t)(o - s), "%s", j->abandoned);
	free(j->abandoned);
	j->abandoned = NULL;
	j->abandoned_len = 0;
	return s;
}

int journal_wait(struct journal *j, int64_t timeout_ms, char **failed)
{
	int64_t deadline = journal_now_ms() + timeout_ms;
	pthread_mutex_lock(&j->lock);
	for (struct jentry *e = j->head; e; e = e->next)
		if (!e->owned)
			e->next_ms = journal_now_ms(); /* a waiter is here: no backoff now */
	pthread_cond_broadcast(&j->cond);
	while (j->n > 0 && journal_now_ms() < deadline)
		wait_locked(j,
			    deadline - journal_now_ms() < 200 ? deadline - journal_now_ms() : 200);
	int rc = j->n > 0 ? -ETIMEDOUT : j->abandoned_len ? -EIO : 0;
	char *text = rc < 0 ? failed_text_locked(j) : NULL;
	pthread_mutex_unlock(&j->lock);
	if (rc < 0 && !text)
		return -ENOMEM;
	if (failed)
		*failed = text;
	else
		free(text);
	return rc;
}

static int names_id(const struct jentry *e, uint64_t h, const char *id)
{
	return (e->hash == h && !strcmp(e->id, id)) ||
	       (e->src && e->src_hash == h && !strcmp(e->src, id));
}

/* 1 when "<id>\n" is a line of the failed-uploads list. */
static int failed_has_locked(struct journal *j, const char *id)
{
	size_t n = strlen(id);
	for (const char *p = j->failed_ids; p && *p;) {
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		if ((size_t)(nl - p) == n && !memcmp(p, id, n))
			return 1;
		p = nl + 1;
	}
	return 0;
}

/* journal_wait_id, and with `attempt` journal_wait_stored: also -ETIMEDOUT once an entry
 * naming id fails an attempt that began after the call did (a whole retry budget spent
 * while the caller waited; an attempt already under way may fail just before the server
 * recovers). */
static int wait_id(struct journal *j, const char *id, int64_t timeout_ms, int attempt)
{
	uint64_t h = journal_hash(id);
	int64_t start = journal_now_ms(), deadline = start + timeout_ms;
	int rc = 0;
	pthread_mutex_lock(&j->lock);
	for (;;) {
		int found = 0, failed = 0;
		for (struct jentry *e = j->head; e; e = e->next)
			if (names_id(e, h, id)) {
				found = 1;
				failed |= attempt && e->failed_began_ms >= start;
				if (!e->owned && !e->busy && e->next_ms > journal_now_ms())
					e->next_ms = journal_now_ms();
			}
		if (!found)
			break;
		int64_t left = deadline - journal_now_ms();
		if (left <= 0 || failed) {
			rc = -ETIMEDOUT;
			break;
		}
		pthread_cond_broadcast(&j->cond);
		wait_locked(j, left < 200 ? left : 200);
	}
	if (rc == 0 && failed_has_locked(j, id))
		rc = -EIO;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

int journal_wait_id(struct journal *j, const char *id, int64_t timeout_ms)
{
	return wait_id(j, id, timeout_ms, 0);
}

int journal_wait_stored(struct journal *j, const char *id, int64_t timeout_ms)
{
	return wait_id(j, id, timeout_ms, 1);
}

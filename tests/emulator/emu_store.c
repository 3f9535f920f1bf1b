/*
 * emu_store.c - the in-memory image store.
 *
 * Two structures under one rwlock: a chained hash table by id (FNV-1a, doubled when the load
 * factor passes 1) and the upload-time index, an array of (seq, image) slots sorted by seq.
 * seq is assigned in upload order and uploaded_ms strictly increases with it, so uploads
 * append at the end (O(1)) and a continuation token (a seq) is found by binary search
 * (O(log N)). Deletes leave a tombstone slot; the array is compacted when half of it is dead,
 * which keeps deletes amortized O(1) and page scans at most 2x the live entries.
 * Blobs are immutable and reference counted so blob responses and persistence can use them
 * without holding the lock.
 *
 * Drafts (direct uploads whose file has not arrived) live in the hash table only, flagged
 * draft, without a blob and without an order[] slot, so lists never see them; count includes
 * them and ndrafts says how many. Completing a draft gives it a new upload time and appends
 * it to order[]. Expired drafts are removed lazily: when an operation that holds the write
 * lock meets one (get drops its read lock and comes back), and in a sweep of the whole table
 * when EMU_MAX_DRAFTS are pending. Removed images go on a "grave" list (chained by hnext)
 * whose files are unlinked and memory freed after the lock is released.
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct emu_blob *emu_blob_new(const void *data, size_t len)
{
	struct emu_blob *b = malloc(sizeof(*b) + len + 1);

	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	b->len = len;
	if (len && data)
		memcpy(b->data, data, len);
	b->data[len] = 0;
	return b;
}

void emu_blob_ref(struct emu_blob *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void emu_blob_unref(struct emu_blob *b)
{
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

void emu_image_free(struct emu_image *im)
{
	if (!im)
		return;
	free(im->id);
	free(im->filename);
	free(im->creator);
	free(im->meta);
	emu_blob_unref(im->blob);
	free(im);
}

int emu_store_init(struct emu_store *s, long allowed)
{
	memset(s, 0, sizeof(*s));
	s->nbuckets = 1024;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	if (!s->buckets)
		return -ENOMEM;
	s->next_seq = 1;
	s->allowed = allowed;
	if (pthread_rwlock_init(&s->lock, NULL)) {
		free(s->buckets);
		return -ENOMEM;
	}
	return 0;
}

void emu_store_release(struct emu_store *s)
{
	size_t i;

	for (i = 0; i < s->nbuckets; i++) {
		struct emu_image *im = s->buckets[i], *next;

		for (; im; im = next) {
			next = im->hnext;
			emu_image_free(im);
		}
	}
	free(s->buckets);
	free(s->order);
	pthread_rwlock_destroy(&s->lock);
	memset(s, 0, sizeof(*s));
}

static uint64_t hash_id(const char *id, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)id[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

static struct emu_image **find_slot_locked(struct emu_store *s, const char *id, size_t n)
{
	struct emu_image **pp = &s->buckets[hash_id(id, n) & (s->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->hnext) {
		if ((*pp)->idlen == n && memcmp((*pp)->id, id, n) == 0)
			return pp;
	}
	return pp;
}

static struct emu_image *find_locked(struct emu_store *s, const char *id, size_t n)
{
	return *find_slot_locked(s, id, n);
}

static void grow_hash_locked(struct emu_store *s)
{
	size_t nb = s->nbuckets * 2, i;
	struct emu_image **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* keep the old table; chains just get longer */
	for (i = 0; i < s->nbuckets; i++) {
		struct emu_image *im = s->buckets[i], *next;

		for (; im; im = next) {
			size_t h = hash_id(im->id, im->idlen) & (nb - 1);

			next = im->hnext;
			im->hnext = b[h];
			b[h] = im;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = nb;
}

static int order_reserve_locked(struct emu_store *s, size_t extra)
{
	size_t nc;
	struct emu_slot *o;

	if (s->norder + extra <= s->corder)
		return 0;
	nc = s->corder ? s->corder : 1024;
	while (nc < s->norder + extra)
		nc *= 2;
	o = realloc(s->order, nc * sizeof(*o));
	if (!o)
		return -ENOMEM;
	s->order = o;
	s->corder = nc;
	return 0;
}

static void compact_locked(struct emu_store *s)
{
	size_t i, o = 0;

	for (i = 0; i < s->norder; i++) {
		if (s->order[i].im)
			s->order[o++] = s->order[i];
	}
	s->norder = o;
	s->ndead = 0;
}

/* First slot index whose seq >= seq. */
static size_t lower_bound_locked(const struct emu_store *s, uint64_t seq)
{
	size_t lo = 0, hi = s->norder;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->order[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool expired(const struct emu_image *im, int64_t now)
{
	return im->draft && im->expires_ms <= now;
}

/* Live count: images without drafts. */
static size_t live_locked(const struct emu_store *s)
{
	return s->count - s->ndrafts;
}

/* The next upload time: now, or +1 ms after the last one (strictly increasing). */
static int64_t next_ms_locked(struct emu_store *s)
{
	int64_t now = emu_now_ms();

	s->last_ms = now > s->last_ms ? now : s->last_ms + 1;
	return s->last_ms;
}

static void link_locked(struct emu_store *s, struct emu_image *im)
{
	struct emu_image **pp = find_slot_locked(s, im->id, im->idlen);

	im->hnext = NULL;
	*pp = im;
	s->count++;
	if (s->count > s->nbuckets)
		grow_hash_locked(s);
}

/* Stamps im with the next upload time and appends it to order[] (space reserved). */
static void order_append_locked(struct emu_store *s, struct emu_image *im)
{
	im->uploaded_ms = next_ms_locked(s);
	im->seq = s->next_seq++;
	s->order[s->norder].seq = im->seq;
	s->order[s->norder].im = im;
	s->norder++;
}

static void append_locked(struct emu_store *s, struct emu_image *im)
{
	order_append_locked(s, im);
	link_locked(s, im);
}

static void unlink_locked(struct emu_store *s, struct emu_image **pp)
{
	struct emu_image *im = *pp;
	size_t i = lower_bound_locked(s, im->seq);

	*pp = im->hnext;
	s->count--;
	if (im->draft)
		s->ndrafts--;
	else if (i < s->norder && s->order[i].im == im) {
		s->order[i].im = NULL;
		s->ndead++;
	}
	if (s->ndead > 64 && s->ndead * 2 > s->norder)
		compact_locked(s);
}

/* Unlinks the image at *pp and puts it on the grave list. */
static void bury_locked(struct emu_store *s, struct emu_image **pp, struct emu_image **grave)
{
	struct emu_image *im = *pp;

	unlink_locked(s, pp);
	im->hnext = *grave;
	*grave = im;
}

/* Like find_locked, but an expired draft is removed (onto grave) and not returned. */
static struct emu_image *find_live_locked(struct emu_store *s, const char *id, size_t n,
					  struct emu_image **grave)
{
	struct emu_image **pp = find_slot_locked(s, id, n);

	if (*pp && expired(*pp, emu_now_ms())) {
		bury_locked(s, pp, grave);
		return NULL;
	}
	return *pp;
}

/* After the lock is released: removes the files of buried images and frees them. */
static void grave_release(struct emu_store *s, struct emu_image *grave)
{
	struct emu_image *next;

	for (; grave; grave = next) {
		next = grave->hnext;
		if (s->persist)
			emu_persist_sync_image(s->persist, s, grave->id, grave->idlen,
					       grave->uploaded_ms, true);
		emu_image_free(grave);
	}
}

/* Removes id if it is (still) an expired draft; takes the write lock. */
static void drop_expired(struct emu_store *s, const char *id, size_t idlen)
{
	struct emu_image *grave = NULL;

	pthread_rwlock_wrlock(&s->lock);
	find_live_locked(s, id, idlen, &grave);
	pthread_rwlock_unlock(&s->lock);
	grave_release(s, grave);
}

/* Removes every expired draft (a full table scan; only when the draft cap is reached). */
static void sweep_drafts_locked(struct emu_store *s, struct emu_image **grave)
{
	int64_t now = emu_now_ms();
	size_t i;

	for (i = 0; i < s->nbuckets && s->ndrafts > 0; i++) {
		struct emu_image **pp = &s->buckets[i];

		while (*pp) {
			if (expired(*pp, now))
				bury_locked(s, pp, grave);
			else
				pp = &(*pp)->hnext;
		}
	}
}

/* A copy of im's id (ids may hold NUL bytes: idlen counts) for persisting after the store's
 * lock is dropped, when im may already belong to someone else. */
static char *dup_id(const struct emu_image *im)
{
	char *id = malloc(im->idlen + 1);

	if (id)
		memcpy(id, im->id, im->idlen + 1);
	return id;
}

/* Whether a new image im may come in: -EEXIST when its id is live, -ENOSPC when the account
 * is full (a dead image of that id goes to *grave). */
static int admit_locked(struct emu_store *s, const struct emu_image *im, struct emu_image **grave)
{
	if (find_live_locked(s, im->id, im->idlen, grave))
		return -EEXIST;
	if ((long)live_locked(s) >= s->allowed)
		return -ENOSPC;
	return 0;
}

/* After an insert that returned rc: writes the new image (id, idlen, ms) to the data dir, if
 * any; when that fails it is taken out again (-EIO). Frees id (dup_id). From here on the
 * image belongs to the store and may already be gone (a racing delete). */
static int persist_inserted(struct emu_store *s, int rc, char *id, size_t idlen, int64_t ms)
{
	if (!rc && s->persist && emu_persist_sync_image(s->persist, s, id, idlen, ms, true)) {
		emu_store_delete(s, id, idlen);
		rc = -EIO;
	}
	free(id);
	return rc;
}

int emu_store_insert(struct emu_store *s, struct emu_image *im, const struct emu_vnames *vn,
		     struct emu_buf *out)
{
	struct emu_image *grave = NULL;
	char *id = NULL;
	size_t idlen = im->idlen;
	int64_t ms = 0;
	int rc = 0;

	if (s->persist && !(id = dup_id(im)))
		return -ENOMEM;
	pthread_rwlock_wrlock(&s->lock);
	rc = admit_locked(s, im, &grave);
	if (!rc)
		rc = order_reserve_locked(s, 1);
	if (!rc) {
		append_locked(s, im);
		emu_image_to_json(im, vn, out);
		ms = im->uploaded_ms;
	}
	pthread_rwlock_unlock(&s->lock);
	grave_release(s, grave);
	return persist_inserted(s, rc, id, idlen, ms);
}

int emu_store_insert_many(struct emu_store *s, struct emu_image **ims, size_t n, int64_t *ms_out)
{
	size_t i;
	int rc = 0;

	pthread_rwlock_wrlock(&s->lock);
	if (live_locked(s) + n > (size_t)s->allowed)
		rc = -ENOSPC;
	for (i = 0; !rc && i < n; i++) {
		if (find_locked(s, ims[i]->id, ims[i]->idlen))
			rc = -EEXIST;
	}
	if (!rc)
		rc = order_reserve_locked(s, n);
	for (i = 0; !rc && i < n; i++) {
		append_locked(s, ims[i]);
		ms_out[i] = ims[i]->uploaded_ms;
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int emu_store_insert_draft(struct emu_store *s, struct emu_image *im)
{
	struct emu_image *grave = NULL;
	char *id = NULL;
	size_t idlen = im->idlen;
	int64_t ms = 0;
	int rc = 0;

	if (s->persist && !(id = dup_id(im)))
		return -ENOMEM;
	pthread_rwlock_wrlock(&s->lock);
	if (s->ndrafts >= EMU_MAX_DRAFTS)
		sweep_drafts_locked(s, &grave);
	rc = admit_locked(s, im, &grave);
	if (!rc && s->ndrafts >= EMU_MAX_DRAFTS)
		rc = -EDQUOT;
	if (!rc) {
		im->draft = true;
		im->seq = 0;
		im->uploaded_ms = ms = next_ms_locked(s);
		link_locked(s, im);
		s->ndrafts++;
	}
	pthread_rwlock_unlock(&s->lock);
	grave_release(s, grave);
	return persist_inserted(s, rc, id, idlen, ms);
}

enum emu_draft_state emu_store_draft_state(struct emu_store *s, const char *id, size_t idlen)
{
	enum emu_draft_state st = EMU_DRAFT_ABSENT;
	struct emu_image *im;

	pthread_rwlock_rdlock(&s->lock);
	im = find_locked(s, id, idlen);
	if (im && !im->draft)
		st = EMU_DRAFT_USED;
	else if (im && expired(im, emu_now_ms()))
		st = EMU_DRAFT_EXPIRED;
	else if (im)
		st = EMU_DRAFT_LIVE;
	pthread_rwlock_unlock(&s->lock);
	if (st == EMU_DRAFT_EXPIRED)
		drop_expired(s, id, idlen);
	return st;
}

size_t emu_store_draft_count(struct emu_store *s)
{
	size_t n;

	pthread_rwlock_rdlock(&s->lock);
	n = s->ndrafts;
	pthread_rwlock_unlock(&s->lock);
	return n;
}

size_t emu_store_expire_drafts(struct emu_store *s)
{
	int64_t now = emu_now_ms();
	size_t i, n = 0;

	pthread_rwlock_wrlock(&s->lock);
	for (i = 0; i < s->nbuckets && n < s->ndrafts; i++) {
		struct emu_image *im;

		for (im = s->buckets[i]; im; im = im->hnext) {
			if (im->draft && im->expires_ms > now) {
				im->expires_ms = now;
				n++;
			}
		}
	}
	pthread_rwlock_unlock(&s->lock);
	return n;
}

/* Turns the draft im into an image (space in order[] reserved, filename owned). */
static void complete_locked(struct emu_store *s, struct emu_image *im, struct emu_blob *blob,
			    char *filename)
{
	free(im->filename);
	im->filename = filename;
	emu_blob_ref(blob);
	im->blob = blob;
	im->draft = false;
	im->expires_ms = 0;
	s->ndrafts--;
	order_append_locked(s, im);
}

int emu_store_complete_draft(struct emu_store *s, const char *id, size_t idlen,
			     struct emu_blob *blob, const char *filename,
			     const struct emu_vnames *vn, struct emu_buf *out)
{
	struct emu_image **pp, *im, *grave = NULL;
	char *fname = strdup(filename);
	int64_t old_ms = 0, ms = 0;
	int rc = 0;

	if (!fname)
		return -ENOMEM;
	pthread_rwlock_wrlock(&s->lock);
	pp = find_slot_locked(s, id, idlen);
	im = *pp;
	if (!im)
		rc = -ENOENT;
	else if (!im->draft)
		rc = -EALREADY;
	else if (expired(im, emu_now_ms()))
		rc = -ETIMEDOUT;
	else if ((long)live_locked(s) >= s->allowed)
		rc = -ENOSPC;
	else
		rc = order_reserve_locked(s, 1);
	if (rc == -ETIMEDOUT)
		bury_locked(s, pp, &grave);
	if (!rc) {
		old_ms = im->uploaded_ms;
		complete_locked(s, im, blob, fname);
		fname = NULL;
		emu_image_to_json(im, vn, out);
		ms = im->uploaded_ms;
	}
	pthread_rwlock_unlock(&s->lock);
	free(fname);
	grave_release(s, grave);
	if (!rc && s->persist) {
		/* the new file first, then the draft's (old name) goes: a crash in between
		 * leaves both, and loading prefers the completed image */
		if (emu_persist_sync_image(s->persist, s, id, idlen, ms, true)) {
			emu_store_delete(s, id, idlen);
			rc = -EIO;
		}
		emu_persist_sync_image(s->persist, s, id, idlen, old_ms, true);
	}
	return rc;
}

int emu_store_load_one(struct emu_store *s, struct emu_image *im, struct emu_image **displaced)
{
	struct emu_image **pp = find_slot_locked(s, im->id, im->idlen);
	int rc;

	*displaced = NULL;
	if (*pp && (*pp)->draft && !im->draft) {
		/* a crash while completing a draft left both files: the image wins */
		*displaced = *pp;
		unlink_locked(s, pp);
	}
	if (find_locked(s, im->id, im->idlen))
		return -EEXIST;
	if (im->draft) {
		/* no order[] slot; keep upload times unique past the draft's file name */
		if (im->uploaded_ms > s->last_ms)
			s->last_ms = im->uploaded_ms;
		im->seq = 0;
		link_locked(s, im);
		s->ndrafts++;
		return 0;
	}
	rc = order_reserve_locked(s, 1);
	if (rc)
		return rc;
	s->order[s->norder].seq = 0;
	s->order[s->norder].im = im;
	s->norder++;
	link_locked(s, im);
	return 0;
}

static int cmp_upload(const void *a, const void *b)
{
	const struct emu_image *x = ((const struct emu_slot *)a)->im;
	const struct emu_image *y = ((const struct emu_slot *)b)->im;
	size_t n;
	int c;

	if (x->uploaded_ms != y->uploaded_ms)
		return x->uploaded_ms < y->uploaded_ms ? -1 : 1;
	n = x->idlen < y->idlen ? x->idlen : y->idlen;
	c = memcmp(x->id, y->id, n);
	if (c)
		return c;
	return x->idlen < y->idlen ? -1 : (x->idlen > y->idlen);
}

void emu_store_load_done(struct emu_store *s)
{
	size_t i;

	if (s->norder > 1)
		qsort(s->order, s->norder, sizeof(*s->order), cmp_upload);
	for (i = 0; i < s->norder; i++) {
		s->order[i].seq = s->next_seq++;
		s->order[i].im->seq = s->order[i].seq;
		if (s->order[i].im->uploaded_ms > s->last_ms)
			s->last_ms = s->order[i].im->uploaded_ms;
	}
}

size_t emu_store_count(struct emu_store *s)
{
	size_t n;

	pthread_rwlock_rdlock(&s->lock);
	n = live_locked(s);
	pthread_rwlock_unlock(&s->lock);
	return n;
}

void emu_image_to_json(const struct emu_image *im, const struct emu_vnames *vn, struct emu_buf *out)
{
	char ts[64];
	size_t i;

	emu_buf_puts(out, "{\"id\":");
	emu_buf_json_str(out, im->id, im->idlen);
	if (!im->draft) {
		emu_buf_puts(out, ",\"filename\":");
		emu_buf_json_str(out, im->filename, strlen(im->filename));
	}
	emu_buf_puts(out, ",\"creator\":");
	if (im->creator)
		emu_buf_json_str(out, im->creator, strlen(im->creator));
	else
		emu_buf_puts(out, "null");
	if (im->meta) {
		emu_buf_puts(out, ",\"meta\":");
		emu_buf_puts(out, im->meta);
	}
	emu_buf_puts(out, im->require_signed ? ",\"requireSignedURLs\":true"
					     : ",\"requireSignedURLs\":false");
	emu_format_time(im->uploaded_ms, ts);
	emu_buf_printf(out, ",\"uploaded\":\"%s\",\"variants\":[", ts);
	for (i = 0; vn && i < vn->n; i++) {
		emu_buf_puts(out, i ? ",\"" : "\"");
		emu_buf_puts(out, vn->prefix);
		/* the id goes in verbatim (docs); JSON-escape it without the quotes */
		{
			size_t start = out->len;

			emu_buf_json_str(out, im->id, im->idlen);
			if (!out->err) {
				memmove(out->data + start, out->data + start + 1,
					out->len - start - 2);
				out->len -= 2;
				out->data[out->len] = '\0';
			}
		}
		emu_buf_add(out, "/", 1);
		emu_buf_puts(out, vn->names[i]);
		emu_buf_add(out, "\"", 1);
	}
	emu_buf_puts(out, im->draft ? "],\"draft\":true}" : "]}");
}

int emu_store_get_json(struct emu_store *s, const char *id, size_t idlen,
		       const struct emu_vnames *vn, struct emu_buf *out)
{
	struct emu_image *im;

	bool stale;

	pthread_rwlock_rdlock(&s->lock);
	im = find_locked(s, id, idlen);
	stale = im && expired(im, emu_now_ms());
	if (im && !stale)
		emu_image_to_json(im, vn, out);
	pthread_rwlock_unlock(&s->lock);
	if (stale)
		drop_expired(s, id, idlen);
	return im && !stale ? 0 : -ENOENT;
}

static int apply_patch_locked(struct emu_image *im, const struct emu_patch *p)
{
	char *meta = NULL, *creator = NULL;

	if (p->set_signed && p->require_signed && !emu_is_uuid(im->id, im->idlen))
		return -EPERM;
	if (p->meta && json_object_object_length(p->meta) > 0) {
		meta = strdup(emu_json_compact(p->meta, NULL));
		if (!meta)
			return -ENOMEM;
	}
	if (p->set_creator && p->creator) {
		creator = strdup(p->creator);
		if (!creator) {
			free(meta);
			return -ENOMEM;
		}
	}
	if (p->meta) {
		free(im->meta);
		im->meta = meta;
	}
	if (p->set_creator) {
		free(im->creator);
		im->creator = creator;
	}
	if (p->set_signed)
		im->require_signed = p->require_signed;
	return 0;
}

int emu_store_edit(struct emu_store *s, const char *id, size_t idlen, const struct emu_patch *p,
		   const struct emu_vnames *vn, struct emu_buf *out)
{
	struct emu_image *im, *grave = NULL;
	int64_t ms = 0;
	int rc;

	pthread_rwlock_wrlock(&s->lock);
	im = find_live_locked(s, id, idlen, &grave);
	rc = im ? apply_patch_locked(im, p) : -ENOENT;
	if (!rc) {
		emu_image_to_json(im, vn, out);
		ms = im->uploaded_ms;
	}
	pthread_rwlock_unlock(&s->lock);
	grave_release(s, grave);
	if (!rc && s->persist)
		rc = emu_persist_sync_image(s->persist, s, id, idlen, ms, true);
	return rc;
}

int emu_store_delete(struct emu_store *s, const char *id, size_t idlen)
{
	struct emu_image **pp, *im, *grave = NULL;
	int64_t ms;

	pthread_rwlock_wrlock(&s->lock);
	find_live_locked(s, id, idlen, &grave);
	pp = find_slot_locked(s, id, idlen);
	im = *pp;
	if (!im) {
		pthread_rwlock_unlock(&s->lock);
		grave_release(s, grave);
		return -ENOENT;
	}
	unlink_locked(s, pp);
	ms = im->uploaded_ms;
	pthread_rwlock_unlock(&s->lock);
	emu_image_free(im);
	if (s->persist)
		return emu_persist_sync_image(s->persist, s, id, idlen, ms, true);
	return 0;
}

int emu_store_record(struct emu_store *s, const char *id, size_t idlen, int64_t uploaded_ms,
		     struct emu_buf *hdr, struct emu_blob **blob)
{
	struct emu_image *im;

	pthread_rwlock_rdlock(&s->lock);
	im = find_locked(s, id, idlen);
	if (!im || im->uploaded_ms != uploaded_ms) {
		pthread_rwlock_unlock(&s->lock);
		return -ENOENT;
	}
	emu_buf_puts(hdr, "{\"id\":");
	emu_buf_json_str(hdr, im->id, im->idlen);
	emu_buf_puts(hdr, ",\"filename\":");
	emu_buf_json_str(hdr, im->filename, strlen(im->filename));
	if (im->creator) {
		emu_buf_puts(hdr, ",\"creator\":");
		emu_buf_json_str(hdr, im->creator, strlen(im->creator));
	}
	if (im->meta) {
		emu_buf_puts(hdr, ",\"meta\":");
		emu_buf_puts(hdr, im->meta);
	}
	if (im->draft)
		emu_buf_printf(hdr, ",\"draft\":true,\"expires_ms\":%lld",
			       (long long)im->expires_ms);
	emu_buf_printf(hdr, ",\"requireSignedURLs\":%s,\"uploaded_ms\":%lld,\"size\":%zu}\n",
		       im->require_signed ? "true" : "false", (long long)im->uploaded_ms,
		       im->blob ? im->blob->len : 0);
	*blob = NULL;
	if (!hdr->err && im->blob) {
		*blob = im->blob;
		emu_blob_ref(im->blob);
	}
	pthread_rwlock_unlock(&s->lock);
	return hdr->err;
}

struct emu_blob *emu_store_get_blob(struct emu_store *s, const char *id, size_t idlen)
{
	return emu_store_get_delivery(s, id, idlen, NULL);
}

struct emu_blob *emu_store_get_delivery(struct emu_store *s, const char *id, size_t idlen,
					bool *require_signed)
{
	struct emu_image *im;
	struct emu_blob *b = NULL;

	pthread_rwlock_rdlock(&s->lock);
	im = find_locked(s, id, idlen);
	if (im && im->blob) {
		b = im->blob;
		emu_blob_ref(b);
		if (require_signed)
			*require_signed = im->require_signed;
	}
	pthread_rwlock_unlock(&s->lock);
	return b;
}

static bool matches(const struct emu_image *im, const struct emu_list_args *a)
{
	if (a->creator && !*a->creator && im->creator)
		return false;
	if (a->creator && *a->creator && (!im->creator || strcmp(im->creator, a->creator)))
		return false;
	return emu_filters_match(a->filters, im->meta);
}

void emu_store_list_v1(struct emu_store *s, const struct emu_list_args *a,
		       const struct emu_vnames *vn, struct emu_buf *out)
{
	size_t skip = (a->page - 1) * a->per_page, emitted = 0, i;

	emu_buf_add(out, "[", 1);
	pthread_rwlock_rdlock(&s->lock);
	/* v1 lists newest first, like the v2 default */
	for (i = s->norder; i-- > 0 && emitted < a->per_page;) {
		struct emu_image *im = s->order[i].im;

		if (!im || !matches(im, a))
			continue;
		if (skip) {
			skip--;
			continue;
		}
		if (emitted++)
			emu_buf_add(out, ",", 1);
		emu_image_to_json(im, vn, out);
	}
	pthread_rwlock_unlock(&s->lock);
	emu_buf_add(out, "]", 1);
}

void emu_store_list_v2(struct emu_store *s, const struct emu_list_args *a,
		       const struct emu_vnames *vn, struct emu_buf *out, uint64_t *next_seq)
{
	size_t emitted = 0, k, from, n;
	uint64_t last = 0;
	bool more = false;

	emu_buf_add(out, "[", 1);
	pthread_rwlock_rdlock(&s->lock);
	/* ascending: order[from..norder) upwards; descending: order[0..from) downwards */
	if (a->asc)
		from = a->has_after ? lower_bound_locked(s, a->after_seq + 1) : 0;
	else
		from = a->has_after ? lower_bound_locked(s, a->after_seq) : s->norder;
	n = a->asc ? s->norder - from : from;
	for (k = 0; k < n; k++) {
		struct emu_image *im = s->order[a->asc ? from + k : from - 1 - k].im;

		if (!im || !matches(im, a))
			continue;
		if (emitted == a->per_page) {
			more = true;
			break;
		}
		if (emitted++)
			emu_buf_add(out, ",", 1);
		emu_image_to_json(im, vn, out);
		last = im->seq;
	}
	pthread_rwlock_unlock(&s->lock);
	emu_buf_add(out, "]", 1);
	*next_seq = more ? last : 0;
}

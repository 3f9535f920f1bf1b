/*
 * emu_persist.c - the --data directory.
 *
 *   DIR/account.json          {"account_id":"..."}: the account this directory belongs to
 *   DIR/keys.json             {"keys":[{"name","value"}...]}
 *   DIR/variants.json         {"variants":[{id,options,neverRequireSignedURLs}...]}
 *   DIR/images/i-<ms>.img     one file per image, <ms> = uploaded_ms as 16 hex digits (unique
 *                             in a store because upload times strictly increase); content is
 *                             one JSON header line {id,filename,creator?,meta?,
 *                             requireSignedURLs,uploaded_ms,size} + "\n" + the exact blob bytes;
 *                             a direct-upload draft has "draft":true,"expires_ms":N, size 0 and
 *                             no bytes (its <ms> is the creation time; completing it writes the
 *                             image under its new upload time, then unlinks the draft's file)
 *
 * Every write goes to a temp file in the same directory, is fsync'ed, renamed over the target
 * and the directory is fsync'ed (seeding skips the per-file fsync and only fsyncs the
 * directory at the end: a crash right after seeding may lose seeded images, which then fail
 * the size check on load and are skipped). A crash therefore leaves either the old or the new file,
 * plus maybe a stray ".tmp-*" that the next start deletes. Writers of one image file are serialized
 * by a shard mutex chosen by uploaded_ms; each writer snapshots the current in-memory state after
 * taking it, so the last write always reflects the latest state (no lost updates on disk).
 */
#include "emu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PERSIST_SHARDS 64
#define PERSIST_MAX_DOC (4u * 1024u * 1024u)
#define PERSIST_MAX_FILE (EMU_MAX_IMAGE_BYTES + 64u * 1024u)

struct emu_persist {
	int dirfd;
	int imgfd;
	pthread_mutex_t shard[PERSIST_SHARDS];
};

static int read_fd_all(int fd, size_t cap, char **out, size_t *outlen)
{
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((size_t)st.st_size > cap)
		return -EFBIG;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			return r < 0 ? -errno : -EIO;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	*out = buf;
	*outlen = got;
	return 0;
}

struct json_object *emu_persist_read_doc(struct emu_persist *p, const char *name, int *err)
{
	struct json_object *o;
	char *buf;
	size_t len;
	int fd, rc;

	*err = 0;
	fd = openat(p->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			*err = -errno;
		return NULL;
	}
	rc = read_fd_all(fd, PERSIST_MAX_DOC, &buf, &len);
	close(fd);
	if (rc) {
		*err = rc;
		return NULL;
	}
	o = emu_json_parse(buf, len);
	free(buf);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		*err = -EBADMSG;
		return NULL;
	}
	return o;
}

int emu_persist_write_doc(struct emu_persist *p, const char *name, const char *json, size_t len)
{
	return emu_write_atomic(p->dirfd, name, json, len, "\n", 1, true);
}

static int check_account(struct emu_persist *p, char **account, bool account_given)
{
	struct json_object *doc, *v;
	struct emu_buf b;
	int err, rc;
	const char *stored;

	doc = emu_persist_read_doc(p, "account.json", &err);
	if (err) {
		fprintf(stderr, "imagesfs-emulator: cannot read account.json in data dir: %s\n",
			strerror(-err));
		return err;
	}
	if (doc) {
		if (!json_object_object_get_ex(doc, "account_id", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			json_object_put(doc);
			fprintf(stderr, "imagesfs-emulator: malformed account.json in data dir\n");
			return -EBADMSG;
		}
		stored = json_object_get_string(v);
		if (strcmp(stored, *account) != 0) {
			if (account_given) {
				fprintf(stderr,
					"imagesfs-emulator: data dir belongs to account '%s', not "
					"'%s'\n",
					stored, *account);
				json_object_put(doc);
				return -EINVAL;
			}
			free(*account);
			*account = strdup(stored);
		}
		json_object_put(doc);
		return *account ? 0 : -ENOMEM;
	}
	emu_buf_init(&b, 0);
	emu_buf_puts(&b, "{\"account_id\":");
	emu_buf_json_str(&b, *account, strlen(*account));
	emu_buf_puts(&b, "}");
	rc = b.err ? b.err : emu_persist_write_doc(p, "account.json", b.data, b.len);
	emu_buf_release(&b);
	return rc;
}

int emu_persist_open(const char *dir, char **account, bool account_given, struct emu_persist **out)
{
	struct emu_persist *p = calloc(1, sizeof(*p));
	int rc, i;

	if (!p)
		return -ENOMEM;
	p->dirfd = p->imgfd = -1;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		goto fail_errno;
	p->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dirfd < 0)
		goto fail_errno;
	if (mkdirat(p->dirfd, "images", 0700) < 0 && errno != EEXIST)
		goto fail_errno;
	p->imgfd = openat(p->dirfd, "images", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->imgfd < 0)
		goto fail_errno;
	for (i = 0; i < PERSIST_SHARDS; i++)
		pthread_mutex_init(&p->shard[i], NULL);
	rc = check_account(p, account, account_given);
	if (rc) {
		emu_persist_close(p);
		return rc;
	}
	*out = p;
	return 0;
fail_errno:
	rc = -errno;
	fprintf(stderr, "imagesfs-emulator: cannot open data dir '%s': %s\n", dir, strerror(errno));
	if (p->imgfd >= 0)
		close(p->imgfd);
	if (p->dirfd >= 0)
		close(p->dirfd);
	free(p);
	return rc;
}

void emu_persist_close(struct emu_persist *p)
{
	int i;

	if (!p)
		return;
	for (i = 0; i < PERSIST_SHARDS; i++)
		pthread_mutex_destroy(&p->shard[i]);
	close(p->imgfd);
	close(p->dirfd);
	free(p);
}

void emu_persist_flush(struct emu_persist *p)
{
	/* fsync of the images directory makes the seeded names durable; the file data follows
	 * with normal writeback (syncfs would flush the whole shared filesystem) */
	if (p)
		fsync(p->imgfd);
}

static void image_name(int64_t ms, char out[32])
{
	snprintf(out, 32, "i-%016llx.img", (unsigned long long)ms);
}

int emu_persist_sync_image(struct emu_persist *p, struct emu_store *s, const char *id, size_t idlen,
			   int64_t uploaded_ms, bool do_sync)
{
	pthread_mutex_t *mu = &p->shard[(uint64_t)uploaded_ms % PERSIST_SHARDS];
	struct emu_blob *blob = NULL;
	struct emu_buf hdr;
	char name[32];
	int rc;

	image_name(uploaded_ms, name);
	emu_buf_init(&hdr, 0);
	pthread_mutex_lock(mu);
	rc = emu_store_record(s, id, idlen, uploaded_ms, &hdr, &blob);
	if (rc == 0) {
		rc = emu_write_atomic(p->imgfd, name, hdr.data, hdr.len, blob ? blob->data : NULL,
				      blob ? blob->len : 0, do_sync);
	} else if (rc == -ENOENT) {
		rc = 0;
		if (unlinkat(p->imgfd, name, 0) < 0 && errno != ENOENT)
			rc = -errno;
		else if (do_sync)
			fsync(p->imgfd);
	}
	pthread_mutex_unlock(mu);
	emu_blob_unref(blob);
	emu_buf_release(&hdr);
	if (rc)
		fprintf(stderr, "imagesfs-emulator: cannot persist image file '%s': %s\n", name,
			strerror(-rc));
	return rc;
}

static char *dup_str_field(struct json_object *h, const char *key, bool *bad)
{
	struct json_object *v;
	char *s;

	if (!json_object_object_get_ex(h, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	if (!json_object_is_type(v, json_type_string)) {
		*bad = true;
		return NULL;
	}
	s = strdup(json_object_get_string(v));
	if (!s)
		*bad = true;
	return s;
}

/* Builds an image from a file's content; NULL (with a reason) when malformed. */
static struct emu_image *parse_image_file(const char *buf, size_t len, const char **why)
{
	const char *nl = memchr(buf, '\n', len);
	struct json_object *h, *v;
	struct emu_image *im;
	bool bad = false;
	size_t hlen;

	*why = "no header line";
	if (!nl)
		return NULL;
	hlen = (size_t)(nl - buf);
	h = emu_json_parse(buf, hlen);
	*why = "malformed header";
	if (!h || !json_object_is_type(h, json_type_object)) {
		json_object_put(h);
		return NULL;
	}
	im = calloc(1, sizeof(*im));
	if (!im) {
		json_object_put(h);
		return NULL;
	}
	im->id = dup_str_field(h, "id", &bad);
	im->filename = dup_str_field(h, "filename", &bad);
	im->creator = dup_str_field(h, "creator", &bad);
	if (json_object_object_get_ex(h, "meta", &v) && json_object_is_type(v, json_type_object))
		im->meta = strdup(emu_json_compact(v, NULL));
	if (json_object_object_get_ex(h, "requireSignedURLs", &v))
		im->require_signed = json_object_get_boolean(v);
	if (json_object_object_get_ex(h, "uploaded_ms", &v))
		im->uploaded_ms = json_object_get_int64(v);
	if (json_object_object_get_ex(h, "draft", &v))
		im->draft = json_object_get_boolean(v);
	if (im->draft && json_object_object_get_ex(h, "expires_ms", &v))
		im->expires_ms = json_object_get_int64(v);
	if (!json_object_object_get_ex(h, "size", &v) ||
	    (size_t)json_object_get_int64(v) != len - hlen - 1) {
		*why = "size mismatch (truncated file?)";
		bad = true;
	}
	json_object_put(h);
	if (!bad && (!im->id || !im->filename || im->uploaded_ms <= 0))
		bad = true;
	if (!bad && im->draft && (im->expires_ms <= 0 || len - hlen - 1 != 0)) {
		*why = "malformed draft";
		bad = true;
	}
	if (!bad && im->draft) {
		im->idlen = strlen(im->id);
	} else if (!bad) {
		im->idlen = strlen(im->id);
		im->blob = emu_blob_new(nl + 1, len - hlen - 1);
		bad = im->blob == NULL;
	}
	if (bad) {
		emu_image_free(im);
		return NULL;
	}
	return im;
}

/* Reads one image file; *im NULL (and 0) when the file is malformed and was skipped. */
static int read_image_file(struct emu_persist *p, const char *name, struct emu_image **im)
{
	const char *why = NULL;
	char *buf;
	size_t len;
	int fd, rc;

	*im = NULL;
	fd = openat(p->imgfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = read_fd_all(fd, PERSIST_MAX_FILE, &buf, &len);
	close(fd);
	if (rc)
		return rc;
	*im = parse_image_file(buf, len, &why);
	free(buf);
	if (!*im)
		fprintf(stderr, "imagesfs-emulator: skipping image file '%s': %s\n", name, why);
	return 0;
}

struct dir_ent {
	ino_t ino;
	char *name;
};

static int cmp_ino(const void *a, const void *b)
{
	ino_t x = ((const struct dir_ent *)a)->ino, y = ((const struct dir_ent *)b)->ino;

	return x < y ? -1 : x > y;
}

/* Lists the image files (removing stray temp files), sorted by inode number: on a cold cache
 * reading in inode order is mostly sequential on disk, several times faster than readdir
 * order for 100k files. */
static int list_images(struct emu_persist *p, struct dir_ent **out, size_t *n)
{
	struct dir_ent *v = NULL, *nv;
	size_t cap = 0, cnt = 0;
	struct dirent *de;
	DIR *d;
	int fd = dup(p->imgfd);

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp-", 5) == 0) {
			unlinkat(p->imgfd, de->d_name, 0);
			continue;
		}
		if (strncmp(de->d_name, "i-", 2) != 0)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 1024;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[cnt].ino = de->d_ino;
		v[cnt].name = strdup(de->d_name);
		if (!v[cnt].name)
			break;
		cnt++;
	}
	closedir(d);
	if (de) {
		while (cnt)
			free(v[--cnt].name);
		free(v);
		return -ENOMEM;
	}
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), cmp_ino);
	*out = v;
	*n = cnt;
	return 0;
}

#define LOAD_THREADS 8

struct load_job {
	struct emu_persist *p;
	struct emu_store *s;
	struct dir_ent *ents;
	size_t n;
	atomic_size_t next;
	pthread_mutex_t mu; /* serializes inserts into the (write-locked) store */
	int rc;		    /* guarded by mu */
};

/* Inserts one loaded image (job->mu held); drafts superseded by their image are removed. */
static void load_insert(struct load_job *j, struct emu_image *im, const char *name)
{
	struct emu_image *displaced = NULL;
	char dname[32];
	int rc = emu_store_load_one(j->s, im, &displaced);

	if (displaced) {
		image_name(displaced->uploaded_ms, dname);
		unlinkat(j->p->imgfd, dname, 0);
		emu_image_free(displaced);
	}
	if (rc == -EEXIST && im->draft) {
		unlinkat(j->p->imgfd, name, 0); /* the draft of an image that was completed */
		emu_image_free(im);
	} else if (rc) {
		fprintf(stderr, "imagesfs-emulator: skipping image file '%s': %s\n", name,
			rc == -EEXIST ? "duplicate id" : strerror(-rc));
		emu_image_free(im);
	}
}

/* Worker: reads and parses files in parallel (many I/Os in flight on a cold cache, JSON
 * parsing on every core), inserts under job->mu. */
static void *load_worker(void *arg)
{
	struct load_job *j = arg;
	size_t i;

	while ((i = atomic_fetch_add(&j->next, 1)) < j->n) {
		struct emu_image *im = NULL;
		int rc = read_image_file(j->p, j->ents[i].name, &im);

		pthread_mutex_lock(&j->mu);
		if (rc && !j->rc) {
			fprintf(stderr, "imagesfs-emulator: cannot read image file '%s': %s\n",
				j->ents[i].name, strerror(-rc));
			j->rc = rc;
		}
		if (im && im->draft && im->expires_ms <= emu_now_ms()) {
			unlinkat(j->p->imgfd, j->ents[i].name, 0); /* an expired draft */
			emu_image_free(im);
			im = NULL;
		}
		if (im)
			load_insert(j, im, j->ents[i].name);
		pthread_mutex_unlock(&j->mu);
	}
	return NULL;
}

int emu_persist_load_images(struct emu_persist *p, struct emu_store *s)
{
	struct load_job j = {.p = p, .s = s};
	pthread_t tids[LOAD_THREADS];
	size_t i, nt = 0;
	int rc = list_images(p, &j.ents, &j.n);

	if (rc)
		return rc;
	atomic_init(&j.next, 0);
	pthread_mutex_init(&j.mu, NULL);
	pthread_rwlock_wrlock(&s->lock);
	for (i = 0; i < LOAD_THREADS && i * 64 < j.n; i++) {
		if (pthread_create(&tids[nt], NULL, load_worker, &j) == 0)
			nt++;
	}
	load_worker(&j); /* the caller works too (and finishes alone if no thread started) */
	for (i = 0; i < nt; i++)
		pthread_join(tids[i], NULL);
	emu_store_load_done(s);
	pthread_rwlock_unlock(&s->lock);
	pthread_mutex_destroy(&j.mu);
	for (i = 0; i < j.n; i++)
		free(j.ents[i].name);
	free(j.ents);
	return j.rc;
}

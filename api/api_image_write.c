/*
 * api_image_write.c - image endpoints that write: upload, edit, delete.
 *
 * Each may lose every reply to a request the server did act on. An upload with a custom id
 * is settled here by reading the image back and comparing it with what was sent
 * (recover_upload); a lost edit or delete is settled by api_outcome.c. Both read through
 * api_images.c, which never calls back up here.
 */
#include "api_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNIFF_BYTES 512

static int add_upload_fields(struct api_mp *mp, const struct api_upload *up)
{
	int rc = 0;
	if (up->id)
		rc = api_mp_add_text(mp, "id", up->id);
	if (!rc && up->metadata_json)
		rc = api_mp_add_text(mp, "metadata", up->metadata_json);
	if (!rc && up->require_signed_urls >= 0)
		rc = api_mp_add_text(mp, "requireSignedURLs",
				     up->require_signed_urls ? "true" : "false");
	if (!rc && up->creator)
		rc = api_mp_add_text(mp, "creator", up->creator);
	if (!rc && up->url)
		rc = api_mp_add_text(mp, "url", up->url);
	return rc;
}

static int add_upload_file(struct api_mp *mp, const struct api_upload *up, struct api_err *err)
{
	struct stat st;
	unsigned char head[SNIFF_BYTES];
	if (fstat(up->fd, &st) != 0)
		return api_fail(err, errno, "cannot stat upload fd: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return api_fail(err, EINVAL, "upload fd is not a regular file");
	ssize_t n = pread(up->fd, head, sizeof(head), 0);
	if (n < 0)
		return api_fail(err, errno, "cannot read upload fd: %s", strerror(errno));
	const char *ct = api_sniff_content_type(head, (size_t)n);
	int rc = api_mp_add_file(mp, "file", up->filename ? up->filename : "file", ct, up->fd,
				 (uint64_t)st.st_size);
	return rc ? api_fail(err, -rc, "cannot encode upload") : 0;
}

static int build_upload(struct api_mp *mp, const struct api_upload *up, struct api_err *err)
{
	int rc = api_mp_init(mp, NULL);
	if (rc)
		return api_fail(err, -rc, "cannot start multipart body");
	rc = add_upload_fields(mp, up);
	if (rc)
		return api_fail(err, -rc, "cannot encode upload fields");
	if (up->fd >= 0 && (rc = add_upload_file(mp, up, err)))
		return rc;
	rc = api_mp_finish(mp);
	return rc ? api_fail(err, -rc, "cannot encode upload") : 0;
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Compares the bytes of the stored image with what we sent (fd, from offset 0): 1 the same,
 * 0 different, -1 cannot tell (the blob could not be read). Runs only on the rare recovery
 * path. */
static int same_blob(struct api_client *c, const char *id, int fd)
{
	char a[65536], b[65536];
	struct api_err gerr;
	uint64_t got = 0;
	struct stat st;
	int tmp = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	int same = -1;

	if (tmp < 0 || fstat(fd, &st) < 0)
		goto out;
	int rc = api_image_blob(c, id, tmp, 0, &got, NULL, 0, &gerr);
	same = 0;
	if (rc == -ENOENT || (rc == 0 && got != (uint64_t)st.st_size))
		goto out;
	same = -1;
	if (rc != 0)
		goto out;
	same = 0;
	for (off_t off = 0; off < st.st_size;) {
		ssize_t n = pread(fd, a, sizeof(a), off);
		if (n <= 0 || pread(tmp, b, (size_t)n, off) != n || memcmp(a, b, (size_t)n) != 0)
			goto out;
		off += n;
	}
	same = 1;
out:
	if (tmp >= 0)
		close(tmp);
	return same;
}

/* The image under our id could not be read back: whether it is the one we sent is unknown.
 * "Already exists" would then be a guess (and mv would print "File exists"): EIO says it. */
static int upload_unknown(struct api_err *err, const struct api_err *orig, int rc)
{
	*err = *orig;
	if (rc != -EEXIST)
		return rc;
	snprintf(err->message, sizeof(err->message),
		 "upload outcome unknown: an image with this id exists and cannot be read back");
	return -EIO;
}

/* After an attempt whose outcome is unknown (sent, then no reply, a 5xx, or "already exists"
 * on a retry): fetch the image and accept it if it is the one we sent — same filename,
 * creator and privacy, uploaded after we started, and for file uploads the same bytes. */
static int recover_upload(struct api_client *c, const struct api_upload *up, int64_t started_ms,
			  struct api_image *out, struct api_err *err, int rc)
{
	struct api_err orig = *err, gerr;
	struct api_image img;
	int grc = api_image_get(c, up->id, &img, &gerr);
	if (grc == -ENOENT) {
		*err = orig; /* nothing stored: the original failure stands */
		return rc;
	}
	if (grc != 0)
		return upload_unknown(err, &orig, rc);
	const char *fname = up->fd >= 0 ? (up->filename ? up->filename : "file") : NULL;
	int match =
	    same_str(up->creator, img.creator) && (!fname || same_str(fname, img.filename)) &&
	    (up->require_signed_urls < 0 || !up->require_signed_urls == !img.require_signed_urls) &&
	    (!img.uploaded_ms || img.uploaded_ms >= started_ms - API_UPLOAD_CLOCK_SKEW_MS);
	int same = match && up->fd >= 0 ? same_blob(c, up->id, up->fd) : match;
	if (same != 1) {
		api_image_release(&img);
		if (same < 0)
			return upload_unknown(err, &orig, rc);
		*err = orig; /* someone else's image, or none of ours */
		return rc;
	}
	*out = img;
	memset(err, 0, sizeof(*err));
	err->attempts = orig.attempts;
	return 0;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int api_image_upload(struct api_client *c, const struct api_upload *up, struct api_image *out,
		     struct api_err *err)
{
	struct api_err local;
	struct api_mp mp;
	struct api_req r;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	if (!up || (up->fd >= 0) == (up->url != NULL))
		return api_fail(err, EINVAL, "upload needs exactly one of fd and url");
	int rc = build_upload(&mp, up, err);
	char *url = rc ? NULL : api_url(c, "/v1", NULL, NULL);
	if (!rc && !url)
		rc = api_fail(err, ENOMEM, "out of memory");
	if (!rc) {
		api_req_init(&r, "POST", url, up->id ? API_CREATE_WITH_ID : API_CREATE_ANON);
		r.mp = &mp;
		int64_t started = wall_ms();
		api_tally_upload_begin(c);
		rc = api_image_call(c, &r, out, err);
		/* A custom id makes a lost outcome checkable: never report a stored upload as
		 * failed (and never store it twice: retries of a stored one get 5409). */
		if (rc < 0 && r.outcome_unknown && up->id)
			rc = recover_upload(c, up, started, out, err, rc);
		api_tally_upload_end(c, rc);
		api_req_release(&r);
	}
	free(url);
	api_mp_release(&mp);
	return rc;
}

/* {"metadata":{...},"creator":"...","requireSignedURLs":true} with only the set fields. */
static char *patch_body(const struct api_image_patch *p, struct api_err *err, int *rc)
{
	struct json_object *o = json_object_new_object(), *meta = NULL;
	char msg[128];
	char *s = NULL;
	*rc = o ? 0 : api_fail(err, ENOMEM, "out of memory");
	if (!*rc && p->metadata_json) {
		if (api_json_parse(p->metadata_json, strlen(p->metadata_json), &meta, msg,
				   sizeof(msg)) ||
		    !json_object_is_type(meta, json_type_object)) {
			json_object_put(meta);
			*rc = api_fail(err, EINVAL, "metadata is not a JSON object");
		} else {
			json_object_object_add(o, "metadata", meta);
		}
	}
	if (!*rc && p->creator)
		json_object_object_add(o, "creator", json_object_new_string(p->creator));
	if (!*rc && p->require_signed_urls >= 0)
		json_object_object_add(o, "requireSignedURLs",
				       json_object_new_boolean(p->require_signed_urls != 0));
	if (!*rc) {
		const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		s = t ? strdup(t) : NULL;
		if (!s)
			*rc = api_fail(err, ENOMEM, "out of memory");
	}
	json_object_put(o);
	return s;
}

int api_image_edit(struct api_client *c, const char *id, const struct api_image_patch *p,
		   struct api_image *out, struct api_err *err)
{
	struct api_err local;
	struct api_req r;
	int rc;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	if (api_image_id_ok(id, err))
		return -EINVAL;
	if (!p)
		return api_fail(err, EINVAL, "no patch given");
	char *body = patch_body(p, err, &rc);
	if (rc)
		return rc;
	char *url = api_url(c, "/v1/", id, NULL);
	if (!url) {
		free(body);
		return api_fail(err, ENOMEM, "out of memory");
	}
	api_req_init(&r, "PATCH", url, API_IDEMPOTENT);
	r.json_body = body;
	rc = api_image_call(c, &r, out, err);
	/* Every reply lost: the server may hold the change; read it back (api_outcome.c). */
	if (rc < 0 && r.outcome_unknown)
		rc = api_outcome_edit(c, id, p, out, err, rc);
	api_req_release(&r);
	free(url);
	free(body);
	return rc;
}

int api_image_delete(struct api_client *c, const char *id, struct api_err *err)
{
	struct api_err local;
	struct api_req r;
	struct json_object *root, *result;
	if (!err)
		err = &local;
	if (api_image_id_ok(id, err))
		return -EINVAL;
	char *url = api_url(c, "/v1/", id, NULL);
	if (!url)
		return api_fail(err, ENOMEM, "out of memory");
	api_req_init(&r, "DELETE", url, API_IDEMPOTENT);
	int rc = api_http_json(c, &r, &root, &result, err);
	json_object_put(root);
	/* Gone on a retry after an attempt that may have deleted it: that attempt did. */
	if (rc == -ENOENT && r.outcome_unknown) {
		int attempts = err->attempts;
		memset(err, 0, sizeof(*err));
		err->attempts = attempts;
		rc = 0;
	} else if (rc < 0 && r.outcome_unknown) {
		rc = api_outcome_delete(c, id, err, rc); /* every reply lost: read it back */
	}
	api_req_release(&r);
	free(url);
	return rc;
}

/*
 * api_images.c - image endpoints that read: v2/v1 listing, details, blob, delivery URL; and
 * the single-image call (one request whose result is an image) the writes in
 * api_image_write.c build on.
 *
 * Listing holds one page at a time: a page is parsed, every image is handed to the
 * callback (borrowed), and the document is freed before the next page is fetched. The
 * continuation token must change from page to page and runs of empty pages are bounded,
 * so a confused server cannot keep the client looping.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V2_MAX_PER_PAGE 10000

int api_image_id_ok(const char *id, struct api_err *err)
{
	if (!id || !*id)
		return api_fail(err, EINVAL, "empty image id");
	return 0;
}

/* ---- listing -------------------------------------------------------------------- */

struct list_cb_ctx {
	api_image_cb cb;
	void *arg;
	int stopped; /* the user callback returned non-zero */
};

static int list_cb(const struct api_image *img, void *arg)
{
	struct list_cb_ctx *lc = arg;
	int rc = lc->cb ? lc->cb(img, lc->arg) : 0;
	if (rc)
		lc->stopped = 1;
	return rc;
}

static char *v2_url(struct api_client *c, int per_page, const struct api_list_opts *opts,
		    const char *token)
{
	struct api_buf b = {0};
	int rc = api_buf_adds(&b, c->images_url);
	if (!rc)
		rc = api_buf_printf(&b, "/v2?per_page=%d", per_page);
	if (!rc && opts && opts->sort_asc)
		rc = api_buf_adds(&b, "&sort_order=asc");
	if (!rc && opts && opts->creator) {
		rc = api_buf_adds(&b, "&creator=");
		if (!rc)
			rc = api_buf_add_escaped(&b, opts->creator);
	}
	if (!rc && token[0]) {
		rc = api_buf_adds(&b, "&continuation_token=");
		if (!rc)
			rc = api_buf_add_escaped(&b, token);
	}
	if (rc) {
		api_buf_release(&b);
		return NULL;
	}
	return api_buf_steal(&b);
}

/* Fetches one page and feeds it to the callback. *n = images on it; next = its token. */
static int list_page(struct api_client *c, const char *url, size_t max_json, struct list_cb_ctx *lc,
		     size_t *n, char *next, size_t nextlen, int *requests, struct api_err *err)
{
	struct api_req r;
	struct json_object *root, *result;
	api_req_init(&r, "GET", url, API_IDEMPOTENT);
	r.max_json = max_json;
	int rc = api_http_json(c, &r, &root, &result, err);
	*requests += r.attempts;
	if (!rc) {
		rc = api_parse_list_page(result, list_cb, lc, n, next, nextlen, err->message,
					 sizeof(err->message));
		if (rc && !lc->stopped)
			err->http_status = r.status;
	}
	json_object_put(root);
	api_req_release(&r);
	return rc;
}

static int list_v2_loop(struct api_client *c, const struct api_list_opts *opts,
			struct list_cb_ctx *lc, int *nreq, struct api_err *err)
{
	int per_page = opts && opts->per_page > 0 ? opts->per_page : V2_MAX_PER_PAGE;
	int max_pages = opts && opts->max_pages > 0 ? opts->max_pages : 0;
	char *token = calloc(2, API_MAX_TOKEN_LEN + 1);
	char *next = token ? token + API_MAX_TOKEN_LEN + 1 : NULL;
	int rc = 0, pages = 0, empty_run = 0;

	if (!token)
		return api_fail(err, ENOMEM, "out of memory");
	for (;;) {
		size_t n = 0;
		char *url = v2_url(c, per_page, opts, token);
		if (!url) {
			rc = api_fail(err, ENOMEM, "out of memory");
			break;
		}
		rc = list_page(c, url, API_MAX_JSON_BYTES, lc, &n, next, API_MAX_TOKEN_LEN + 1,
			       nreq, err);
		free(url);
		if (rc || !next[0] || (max_pages && ++pages >= max_pages))
			break;
		if (strcmp(next, token) == 0) {
			rc = api_fail(err, EIO, "list: continuation token did not advance");
			break;
		}
		empty_run = n ? 0 : empty_run + 1;
		if (empty_run > API_MAX_EMPTY_PAGES) {
			rc = api_fail(err, EIO, "list: too many empty pages in a row");
			break;
		}
		memcpy(token, next, strlen(next) + 1);
	}
	free(token);
	return rc;
}

int api_images_list(struct api_client *c, const struct api_list_opts *opts, api_image_cb cb,
		    void *arg, int *requests, struct api_err *err)
{
	struct api_err local;
	struct list_cb_ctx lc = {.cb = cb, .arg = arg};
	int nreq = 0;
	if (!err)
		err = &local;
	memset(err, 0, sizeof(*err));
	int rc = list_v2_loop(c, opts, &lc, &nreq, err);
	if (requests)
		*requests = nreq;
	if (!rc || lc.stopped)
		memset(err, 0, sizeof(*err));
	return rc;
}

int api_images_list_v1(struct api_client *c, int page, int per_page, const char *creator,
		       api_image_cb cb, void *arg, size_t *n_out, struct api_err *err)
{
	struct api_err local;
	struct list_cb_ctx lc = {.cb = cb, .arg = arg};
	struct api_buf b = {0};
	size_t n = 0;
	int nreq = 0;
	if (!err)
		err = &local;
	if (page < 1)
		return api_fail(err, EINVAL, "v1 list: page must be >= 1");
	int rc = api_buf_adds(&b, c->images_url);
	if (!rc)
		rc = api_buf_printf(&b, "/v1?page=%d", page);
	if (!rc && per_page > 0)
		rc = api_buf_printf(&b, "&per_page=%d", per_page);
	if (!rc && creator && !(rc = api_buf_adds(&b, "&creator=")))
		rc = api_buf_add_escaped(&b, creator);
	if (rc) {
		api_buf_release(&b);
		return api_fail(err, ENOMEM, "out of memory");
	}
	memset(err, 0, sizeof(*err));
	rc = list_page(c, b.data, API_MAX_JSON_BYTES, &lc, &n, NULL, 0, &nreq, err);
	api_buf_release(&b);
	if (!rc || lc.stopped)
		memset(err, 0, sizeof(*err));
	if (!rc && n_out)
		*n_out = n;
	return rc;
}

/* ---- single image ------------------------------------------------------------------ */

int api_image_call(struct api_client *c, struct api_req *r, struct api_image *out,
		   struct api_err *err)
{
	struct json_object *root, *result;
	int rc = api_http_json(c, r, &root, &result, err);
	if (!rc) {
		rc = api_parse_image(result, out, err->message, sizeof(err->message));
		if (rc)
			err->http_status = r->status;
	}
	json_object_put(root);
	return rc;
}

int api_image_get(struct api_client *c, const char *id, struct api_image *out, struct api_err *err)
{
	struct api_err local;
	struct api_req r;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	if (api_image_id_ok(id, err))
		return -EINVAL;
	char *url = api_url(c, "/v1/", id, NULL);
	if (!url)
		return api_fail(err, ENOMEM, "out of memory");
	api_req_init(&r, "GET", url, API_IDEMPOTENT);
	int rc = api_image_call(c, &r, out, err);
	api_req_release(&r);
	free(url);
	return rc;
}

int api_image_blob(struct api_client *c, const char *id, int fd, uint64_t max_bytes,
		   uint64_t *size_out, char *content_type, size_t ct_len, struct api_err *err)
{
	struct api_err local;
	struct api_req r;
	if (!err)
		err = &local;
	if (api_image_id_ok(id, err))
		return -EINVAL;
	if (fd < 0)
		return api_fail(err, EBADF, "blob: bad fd");
	char *url = api_url(c, "/v1/", id, "/blob");
	if (!url)
		return api_fail(err, ENOMEM, "out of memory");
	api_req_init(&r, "GET", url, API_IDEMPOTENT);
	r.sink_fd = fd;
	r.max_bytes = max_bytes ? max_bytes : (uint64_t)API_MAX_IMAGE_BYTES + API_BLOB_SLACK;
	int rc = api_http_do(c, &r, err);
	if (!rc) {
		if (size_out)
			*size_out = r.written;
		if (content_type && ct_len)
			api_strlcpy(content_type, r.content_type, ct_len);
	}
	api_req_release(&r);
	free(url);
	return rc;
}

int api_delivery_get(struct api_client *c, const char *url, int fd, uint64_t max_bytes,
		     uint64_t *size_out, struct api_err *err)
{
	struct api_err local;
	struct api_req r;
	if (!err)
		err = &local;
	if (fd < 0)
		return api_fail(err, EBADF, "delivery: bad fd");
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		return api_fail(err, EINVAL, "delivery: not an http(s) URL");
	api_req_init(&r, "GET", url, API_IDEMPOTENT);
	r.sink_fd = fd;
	r.delivery = 1;
	r.max_bytes = max_bytes ? max_bytes : (uint64_t)API_MAX_IMAGE_BYTES + API_BLOB_SLACK;
	int rc = api_http_do(c, &r, err);
	if (!rc && size_out)
		*size_out = r.written;
	api_req_release(&r);
	return rc;
}

/*
 * emu_direct.c - direct creator uploads.
 *
 *   POST images/v2/direct_upload   multipart (id, expiry, metadata / metadata[..],
 *                                  requireSignedURLs, creator), a JSON object with the same
 *                                  fields, or an empty body
 *   POST images/v1/direct_upload   (deprecated) a JSON object with the same fields, or empty
 *     -> {"id":..,"uploadURL":"http://<Host>/upload/<ACCOUNT_HASH>/<id percent-encoded>"}
 *        and a draft image (emu_store.c) that GET v1/{id} shows with "draft":true.
 *   POST /upload/<ACCOUNT_HASH>/<id>  no auth, multipart with `file`: completes the draft
 *     (same size/format checks as an upload) and answers the Image. One-time: a second POST
 *     gets 409/5409; an unknown id 404/5404; an expired draft is removed and gets 404/5404.
 *
 * Check order of the create call: body form (415/400) -> field rules (400/5400, as upload)
 * -> expiry (400/5400) -> account limit (403/5453) -> pending drafts cap (403/5453) ->
 * duplicate custom id (409/5409).
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOST_MAX 255

/* Checks an RFC 3339 expiry against now + 2 min .. now + 6 h; false with a 400 reply. */
static bool check_expiry(struct emu_req *rq, const char *s, size_t n, int64_t *out)
{
	int64_t now = emu_now_ms(), lo, hi;

	if (n > 64 || memchr(s, '\0', n) || emu_parse_rfc3339(s, n, out)) {
		emu_reply_error(
		    rq, 400, 5400,
		    "expiry must be an RFC 3339 date-time such as 2021-01-02T02:20:00Z");
		return false;
	}
	lo = now + (EMU_DRAFT_MIN_S - EMU_DRAFT_SLACK_S) * 1000LL;
	hi = now + (EMU_DRAFT_MAX_S + EMU_DRAFT_SLACK_S) * 1000LL;
	if (*out < lo || *out > hi) {
		emu_reply_errorf(
		    rq, 400, 5400,
		    "expiry must be between 2 minutes and 6 hours from now, got '%.*s'", (int)n, s);
		return false;
	}
	return true;
}

/* Fields from a JSON object body (v1, or v2 sent as JSON); false with a reply. */
static bool json_fields(struct emu_req *rq, struct emu_image *im, int64_t *expires)
{
	struct json_object *o = emu_req_json_object(rq), *v;
	bool ok = false;

	if (!o)
		return false;
	if (json_object_object_get_ex(o, "id", &v)) {
		if (!json_object_is_type(v, json_type_string)) {
			emu_reply_error(rq, 400, 5400, "id must be a string");
			goto out;
		}
		if (!emu_check_custom_id(rq, json_object_get_string(v),
					 (size_t)json_object_get_string_len(v)))
			goto out;
		im->idlen = (size_t)json_object_get_string_len(v);
		im->id = strdup(json_object_get_string(v));
	}
	if (json_object_object_get_ex(o, "expiry", &v)) {
		if (!json_object_is_type(v, json_type_string)) {
			emu_reply_error(rq, 400, 5400,
					"expiry must be an RFC 3339 date-time string");
			goto out;
		}
		if (!check_expiry(rq, json_object_get_string(v),
				  (size_t)json_object_get_string_len(v), expires))
			goto out;
	}
	if (json_object_object_get_ex(o, "metadata", &v)) {
		if (!emu_check_metadata(rq, v))
			goto out;
		if (json_object_object_length(v) > 0)
			im->meta = strdup(emu_json_compact(v, NULL));
	}
	if (json_object_object_get_ex(o, "requireSignedURLs", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			emu_reply_error(rq, 400, 5400, "requireSignedURLs must be a boolean");
			goto out;
		}
		im->require_signed = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(o, "creator", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string)) {
			emu_reply_error(rq, 400, 5400, "creator must be a string or null");
			goto out;
		}
		if (!emu_check_creator(rq, json_object_get_string(v),
				       (size_t)json_object_get_string_len(v)))
			goto out;
		im->creator = strdup(json_object_get_string(v));
	}
	if (im->id && im->require_signed) {
		emu_reply_error(rq, 400, 5400,
				"Images with a custom ID cannot require signed URLs");
		goto out;
	}
	ok = true;
out:
	json_object_put(o);
	return ok;
}

/* Fields from a multipart body; false with a reply. */
static bool form_fields(struct emu_req *rq, struct emu_image *im, int64_t *expires)
{
	const struct emu_part *expiry = NULL;
	struct emu_form form;
	bool ok;

	if (!emu_upload_parse_form(rq, &form))
		return false;
	ok = emu_upload_text_fields(rq, &form, true, im, &expiry);
	if (ok && expiry)
		ok = check_expiry(rq, expiry->data, expiry->len, expires);
	emu_form_release(&form);
	return ok;
}

static bool is_json(const char *ctype)
{
	return ctype && strncasecmp(ctype, "application/json", 16) == 0;
}

/* Parses the request into im and *expires; false with a reply. */
static bool take_request(struct emu_req *rq, struct emu_image *im, int64_t *expires)
{
	const char *ctype = emu_req_header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);

	*expires = emu_now_ms() + EMU_DRAFT_DEFAULT_S * 1000LL;
	if (rq->body.len == 0)
		return true; /* no fields: every default */
	if (!rq->v2 || is_json(ctype))
		return json_fields(rq, im, expires);
	return form_fields(rq, im, expires);
}

static bool host_ok(const char *h)
{
	size_t i, n = strlen(h);

	if (n == 0 || n > HOST_MAX)
		return false;
	for (i = 0; i < n; i++) {
		char c = h[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
			return false;
	}
	return true;
}

void emu_self_origin(const struct emu *e, struct emu_req *rq, struct emu_buf *out)
{
	const char *host = emu_req_header(rq, MHD_HTTP_HEADER_HOST);

	emu_buf_puts(out, "http://");
	if (host && host_ok(host)) {
		emu_buf_puts(out, host);
	} else {
		const char *h = e->listen_host;
		bool v6 = strchr(h, ':') != NULL;

		if (!strcmp(h, "0.0.0.0"))
			h = "127.0.0.1";
		else if (!strcmp(h, "::"))
			h = "::1";
		emu_buf_printf(out, "%s%s%s:%u", v6 ? "[" : "", h, v6 ? "]" : "", e->listen_port);
	}
}

/* "<origin>/upload/<hash>/<id percent-encoded>" (origin: emu_self_origin). */
static void upload_url(const struct emu *e, struct emu_req *rq, const char *id, size_t idlen,
		       struct emu_buf *out)
{
	size_t i;

	emu_self_origin(e, rq, out);
	emu_buf_printf(out, "/upload/%s/", e->account_hash);
	for (i = 0; i < idlen; i++) {
		unsigned char c = (unsigned char)id[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			emu_buf_add(out, &c, 1);
		else
			emu_buf_printf(out, "%%%02X", c);
	}
}

/* Inserts the draft (a generated id is retried on a collision); 0 or -errno. On success
 * *id is a copy of the draft's id (the image itself belongs to the store then). */
static int insert_draft(struct emu *e, struct emu_image *im, char **id)
{
	bool custom = im->id != NULL;
	int rc, tries;

	for (tries = 0;; tries++) {
		if (!custom)
			emu_upload_new_id(im);
		free(*id);
		*id = im->id ? strndup(im->id, im->idlen) : NULL;
		rc = *id ? emu_store_insert_draft(&e->store, im) : -ENOMEM;
		if (rc != -EEXIST || custom || tries == 5)
			break;
	}
	if (rc) {
		free(*id);
		*id = NULL;
	}
	return rc;
}

void emu_h_direct_upload(struct emu *e, struct emu_req *rq)
{
	struct emu_image *im = calloc(1, sizeof(*im));
	struct emu_buf b, url;
	char *id = NULL;
	int64_t expires;
	int rc;

	if (!im || !(im->filename = strdup(""))) {
		free(im);
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return;
	}
	if (!take_request(rq, im, &expires)) {
		emu_image_free(im);
		return;
	}
	im->draft = true;
	im->expires_ms = expires;
	rc = insert_draft(e, im, &id);
	if (rc) {
		if (rc != -EIO)
			emu_image_free(im); /* on -EIO the store owned it and removed it again */
		emu_upload_reply_store_error(rq, rc);
		return;
	}
	emu_buf_init(&url, 0);
	upload_url(e, rq, id, strlen(id), &url);
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_puts(&b, "{\"id\":");
	emu_buf_json_str(&b, id, strlen(id));
	emu_buf_puts(&b, ",\"uploadURL\":");
	emu_buf_json_str(&b, url.data ? url.data : "", url.len);
	emu_buf_puts(&b, "}");
	emu_buf_release(&url);
	free(id);
	emu_reply_result_end(rq, &b);
}

/* The draft id of an upload URL (seg[0] = hash, seg[1] = id); false with a 404/409 reply
 * when the URL is unknown, expired (the draft is then removed) or already used. */
static bool url_usable(struct emu *e, struct emu_req *rq)
{
	enum emu_draft_state st = EMU_DRAFT_ABSENT;

	if (!strcmp(rq->seg[0], e->account_hash))
		st = emu_store_draft_state(&e->store, rq->seg[1], rq->seglen[1]);
	if (st == EMU_DRAFT_LIVE)
		return true;
	if (st == EMU_DRAFT_USED)
		emu_reply_error(rq, 409, 5409, "This upload URL has already been used");
	else if (st == EMU_DRAFT_EXPIRED)
		emu_reply_error(rq, 404, 5404, "This upload URL has expired");
	else
		emu_reply_error(rq, 404, 5404, "Upload URL not found");
	return false;
}

void emu_h_direct_file(struct emu *e, struct emu_req *rq)
{
	struct emu_vnames vn;
	struct emu_blob *blob;
	struct emu_form form;
	struct emu_buf b;
	char *filename = NULL;
	int rc;

	if (!url_usable(e, rq) || !emu_upload_parse_form(rq, &form))
		return;
	blob = emu_upload_file_part(rq, &form, &filename);
	emu_form_release(&form);
	if (!blob)
		return;
	if (emu_delivery_names(e, rq, &vn)) {
		emu_blob_unref(blob);
		free(filename);
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return;
	}
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	rc =
	    emu_store_complete_draft(&e->store, rq->seg[1], rq->seglen[1], blob, filename, &vn, &b);
	emu_vnames_release(&vn);
	emu_blob_unref(blob);
	free(filename);
	if (!rc) {
		emu_reply_result_end(rq, &b);
		return;
	}
	emu_buf_release(&b);
	if (rc == -ENOENT)
		emu_reply_error(rq, 404, 5404, "Upload URL not found");
	else if (rc == -ETIMEDOUT)
		emu_reply_error(rq, 404, 5404, "This upload URL has expired");
	else if (rc == -EALREADY)
		emu_reply_error(rq, 409, 5409, "This upload URL has already been used");
	else
		emu_upload_reply_store_error(rq, rc);
}

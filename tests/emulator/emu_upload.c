/*
 * emu_upload.c - POST images/v1: multipart form -> validated image -> store.
 *
 * Order of checks: Content-Type (415/5415) -> form grammar (400) -> fields (400/5400, each
 * with a specific message) -> size (413/5413) -> fetch for `url` (400/5400 or 413) -> format
 * sniffing (415/5455) -> account limit (403/5453) -> duplicate id (409/5409).
 * metadata is accepted as a JSON string (docs) or as bracketed fields metadata[k],
 * metadata[a][b], metadata[list][] (the npm SDK's form encoding; leaf values are strings).
 * The form parsing and field checks are shared with direct uploads (emu_direct.c).
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_MAX_DEPTH 8

struct upload_form {
	const struct emu_part *file;
	const struct emu_part *url;
	const struct emu_part *id;
	const struct emu_part *metadata;
	const struct emu_part *signed_urls;
	const struct emu_part *creator;
	const struct emu_part *expiry;	  /* direct upload only */
	struct json_object *bracket_meta; /* owned */
	const char *dup;		  /* name of a repeated field */
	const char *bad_bracket;	  /* name of a malformed metadata[...] field */
};

/* Adds one metadata[a][b]... = value field to root; false when malformed/conflicting. */
static bool add_bracket_field(struct json_object *root, const char *name, const struct emu_part *p)
{
	const char *s = name + 8; /* after "metadata" */
	struct json_object *cur = root;
	char key[256];
	int depth = 0;

	while (*s == '[') {
		const char *close = strchr(s, ']');
		size_t klen;
		bool last;
		struct json_object *child;

		if (!close || ++depth > META_MAX_DEPTH)
			return false;
		klen = (size_t)(close - s - 1);
		if (klen >= sizeof(key))
			return false;
		memcpy(key, s + 1, klen);
		key[klen] = '\0';
		s = close + 1;
		last = *s == '\0';
		if (klen == 0) {
			/* "[]" appends to an array; only as the last bracket */
			if (!last || !json_object_is_type(cur, json_type_array))
				return false;
			return json_object_array_add(
				   cur, json_object_new_string_len(p->data, (int)p->len)) == 0;
		}
		if (!json_object_is_type(cur, json_type_object))
			return false;
		if (last) {
			if (json_object_object_get_ex(cur, key, NULL))
				return false;
			json_object_object_add(cur, key,
					       json_object_new_string_len(p->data, (int)p->len));
			return true;
		}
		if (!json_object_object_get_ex(cur, key, &child)) {
			child = strcmp(s, "[]") == 0 ? json_object_new_array()
						     : json_object_new_object();
			if (!child)
				return false;
			json_object_object_add(cur, key, child);
		}
		cur = child;
	}
	return false;
}

static void set_field(struct upload_form *f, const struct emu_part **slot, const struct emu_part *p)
{
	if (*slot)
		f->dup = p->name;
	*slot = p;
}

static void collect(const struct emu_form *form, struct upload_form *f)
{
	size_t i;

	for (i = 0; i < form->n; i++) {
		const struct emu_part *p = &form->parts[i];

		if (!strcmp(p->name, "file")) {
			set_field(f, &f->file, p);
		} else if (!strcmp(p->name, "url")) {
			set_field(f, &f->url, p);
		} else if (!strcmp(p->name, "id")) {
			set_field(f, &f->id, p);
		} else if (!strcmp(p->name, "metadata")) {
			set_field(f, &f->metadata, p);
		} else if (!strcmp(p->name, "requireSignedURLs")) {
			set_field(f, &f->signed_urls, p);
		} else if (!strcmp(p->name, "creator")) {
			set_field(f, &f->creator, p);
		} else if (!strcmp(p->name, "expiry")) {
			set_field(f, &f->expiry, p);
		} else if (!strncmp(p->name, "metadata[", 9)) {
			if (!f->bracket_meta)
				f->bracket_meta = json_object_new_object();
			if (!f->bracket_meta || !add_bracket_field(f->bracket_meta, p->name, p))
				f->bad_bracket = p->name;
		}
	}
}

/* Custom id rules; false with a 400/5400 reply. */
bool emu_check_custom_id(struct emu_req *rq, const char *id, size_t n)
{
	const char *why = NULL;

	if (n == 0)
		why = "Custom ID must not be empty";
	else if (n > EMU_MAX_ID_BYTES)
		why = "Custom ID must be at most 1024 bytes";
	else if (memchr(id, '\0', n) || emu_has_ctl(id, n))
		why = "Custom ID must not contain control characters";
	else if (!emu_utf8_valid(id, n))
		why = "Custom ID must be valid UTF-8";
	else if (id[0] == '/' || id[n - 1] == '/')
		why = "Custom ID must not start or end with '/'";
	else if (emu_is_uuid(id, n))
		why = "Custom ID must not be a UUID";
	if (why)
		emu_reply_error(rq, 400, 5400, why);
	return why == NULL;
}

/* Parses the metadata field(s) into *out (NULL: none); false with a reply. */
static bool take_metadata(struct emu_req *rq, struct upload_form *f, struct json_object **out)
{
	*out = NULL;
	if (f->bad_bracket) {
		emu_reply_errorf(rq, 400, 5400, "Malformed metadata field '%.64s'", f->bad_bracket);
		return false;
	}
	if (f->metadata && f->bracket_meta) {
		emu_reply_error(
		    rq, 400, 5400,
		    "Send metadata either as JSON or as metadata[key] fields, not both");
		return false;
	}
	if (f->bracket_meta) {
		*out = f->bracket_meta;
		f->bracket_meta = NULL;
	} else if (f->metadata) {
		*out = emu_json_parse(f->metadata->data, f->metadata->len);
		if (!*out) {
			emu_reply_error(rq, 400, 5400, "metadata must be a valid JSON object");
			return false;
		}
	} else {
		return true;
	}
	if (!emu_check_metadata(rq, *out)) {
		json_object_put(*out);
		*out = NULL;
		return false;
	}
	return true;
}

static bool take_bool(struct emu_req *rq, const struct emu_part *p, bool *out)
{
	*out = false;
	if (!p)
		return true;
	if (p->len == 4 && !memcmp(p->data, "true", 4)) {
		*out = true;
		return true;
	}
	if (p->len == 5 && !memcmp(p->data, "false", 5))
		return true;
	emu_reply_error(rq, 400, 5400, "requireSignedURLs must be 'true' or 'false'");
	return false;
}

static bool check_filename(struct emu_req *rq, const struct emu_part *file)
{
	if (file->filename && (strlen(file->filename) > EMU_MAX_FILENAME_BYTES ||
			       !emu_utf8_valid(file->filename, strlen(file->filename)))) {
		emu_reply_errorf(rq, 400, 5400, "filename must be valid UTF-8 of at most %u bytes",
				 EMU_MAX_FILENAME_BYTES);
		return false;
	}
	return true;
}

/* Basename of a URL path (percent-decoded), "" when there is none. */
static char *url_filename(const char *url)
{
	const char *p = strstr(url, "://"), *end, *slash = NULL, *q;
	char *name;

	p = p ? p + 3 : url;
	end = p + strcspn(p, "?#");
	for (q = p; q < end; q++) {
		if (*q == '/')
			slash = q;
	}
	if (!slash)
		return strdup("");
	name = emu_pct_decode(slash + 1, (size_t)(end - slash - 1), false, NULL);
	if (!name || !emu_utf8_valid(name, strlen(name)) || strlen(name) > EMU_MAX_FILENAME_BYTES) {
		free(name);
		return strdup("");
	}
	return name;
}

/* Gets the image bytes (file part or URL fetch) into a new blob; NULL with a reply. */
static struct emu_blob *take_bytes(struct emu_req *rq, const struct upload_form *f, char **filename)
{
	struct emu_blob *blob;
	struct emu_buf b;
	char err[256];
	int rc;

	if (f->file) {
		if (f->file->len > EMU_MAX_IMAGE_BYTES) {
			emu_reply_error(rq, 413, 5413, "Maximum image size of 10 MB is reached");
			return NULL;
		}
		blob = emu_blob_new(f->file->data, f->file->len);
		*filename = strdup(f->file->filename ? f->file->filename : "");
	} else {
		char *url = strndup(f->url->data, f->url->len);

		if (!url || strlen(url) != f->url->len || f->url->len == 0) {
			free(url);
			emu_reply_error(rq, 400, 5400, "url must be a non-empty URL");
			return NULL;
		}
		emu_buf_init(&b, 0);
		rc = emu_fetch_url(url, EMU_MAX_IMAGE_BYTES, &b, err, sizeof(err));
		if (rc) {
			free(url);
			emu_buf_release(&b);
			if (rc == -EFBIG)
				emu_reply_error(rq, 413, 5413,
						"Maximum image size of 10 MB is reached");
			else
				emu_reply_errorf(rq, 400, 5400,
						 "Failed to fetch image from URL: %s", err);
			return NULL;
		}
		blob = emu_blob_new(b.data, b.len);
		emu_buf_release(&b);
		*filename = url_filename(url);
		free(url);
	}
	if (!blob || !*filename) {
		emu_blob_unref(blob);
		free(*filename);
		*filename = NULL;
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return NULL;
	}
	return blob;
}

/* All text-field checks; fills im (id, creator, meta, require_signed). direct: a direct
 * upload request (no file/url; a repeated expiry is caught by the dup check). */
static bool check_fields(struct emu_req *rq, struct upload_form *f, struct emu_image *im,
			 bool direct)
{
	struct json_object *meta = NULL;

	if (f->dup) {
		emu_reply_errorf(rq, 400, 5400, "Field '%.64s' given more than once", f->dup);
		return false;
	}
	if (direct && (f->file || f->url)) {
		emu_reply_error(
		    rq, 400, 5400,
		    "A direct upload request takes no 'file' or 'url': POST the file to "
		    "the returned uploadURL");
		return false;
	}
	if (!direct && f->file && f->url) {
		emu_reply_error(rq, 400, 5400, "Provide either 'file' or 'url', not both");
		return false;
	}
	if (!direct && !f->file && !f->url) {
		emu_reply_error(rq, 400, 5400, "Provide a 'file' or a 'url' field to upload");
		return false;
	}
	if (f->id && !emu_check_custom_id(rq, f->id->data, f->id->len))
		return false;
	if (!take_bool(rq, f->signed_urls, &im->require_signed))
		return false;
	if (f->id && im->require_signed) {
		emu_reply_error(rq, 400, 5400,
				"Images with a custom ID cannot require signed URLs");
		return false;
	}
	if (f->creator && !emu_check_creator(rq, f->creator->data, f->creator->len))
		return false;
	if (f->file && !check_filename(rq, f->file))
		return false;
	if (!take_metadata(rq, f, &meta))
		return false;
	if (meta && json_object_object_length(meta) > 0)
		im->meta = strdup(emu_json_compact(meta, NULL));
	json_object_put(meta);
	if (f->creator)
		im->creator = strndup(f->creator->data, f->creator->len);
	if (f->id) {
		im->id = strndup(f->id->data, f->id->len);
		im->idlen = f->id->len;
	}
	return true;
}

void emu_upload_new_id(struct emu_image *im)
{
	free(im->id);
	im->id = malloc(37);
	if (im->id)
		emu_uuid4(im->id);
	im->idlen = 36;
}

void emu_upload_reply_store_error(struct emu_req *rq, int rc)
{
	if (rc == -EEXIST)
		emu_reply_error(rq, 409, 5409,
				"Resource already exists. Verify the resource information and try "
				"again.");
	else if (rc == -ENOSPC)
		emu_reply_error(rq, 403, 5453, "The given account has reached a service limit");
	else if (rc == -EDQUOT)
		emu_reply_errorf(rq, 403, 5453,
				 "The given account has reached a service limit (%u pending direct "
				 "uploads)",
				 EMU_MAX_DRAFTS);
	else if (rc == -EIO)
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
	else
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
}

static void store_image(struct emu *e, struct emu_req *rq, struct emu_image *im, bool custom)
{
	struct emu_vnames vn;
	struct emu_buf b;
	int rc, tries;

	if (emu_delivery_names(e, rq, &vn)) {
		emu_image_free(im);
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return;
	}
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	for (tries = 0;; tries++) {
		if (!custom)
			emu_upload_new_id(im);
		rc = im->id ? emu_store_insert(&e->store, im, &vn, &b) : -ENOMEM;
		if (rc != -EEXIST || custom || tries == 5)
			break;
	}
	emu_vnames_release(&vn);
	if (!rc) {
		emu_reply_result_end(rq, &b);
		return;
	}
	emu_buf_release(&b);
	if (rc != -EIO)
		emu_image_free(im); /* on -EIO the store owned it and has removed it again */
	emu_upload_reply_store_error(rq, rc);
}

static void upload_from_form(struct emu *e, struct emu_req *rq, const struct emu_form *form)
{
	struct upload_form f = {0};
	struct emu_image *im = calloc(1, sizeof(*im));
	bool custom;

	if (!im) {
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return;
	}
	collect(form, &f);
	if (!check_fields(rq, &f, im, false))
		goto fail;
	custom = im->id != NULL;
	im->blob = take_bytes(rq, &f, &im->filename);
	if (!im->blob)
		goto fail;
	if (!emu_sniff(im->blob->data, im->blob->len)) {
		emu_reply_error(rq, 415, 5455, "Unsupported image format");
		goto fail;
	}
	if ((f.id && !im->id) || (f.creator && !im->creator)) {
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		goto fail;
	}
	json_object_put(f.bracket_meta);
	store_image(e, rq, im, custom);
	return;
fail:
	json_object_put(f.bracket_meta);
	emu_image_free(im);
}

bool emu_upload_parse_form(struct emu_req *rq, struct emu_form *form)
{
	const char *ctype = emu_req_header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
	char boundary[80];
	const char *why = "";
	int rc;

	rc = emu_multipart_boundary(ctype, boundary, sizeof(boundary));
	if (rc == -EINVAL) {
		emu_reply_error(rq, 415, 5415,
				"Images must be uploaded as a form, not as raw image data. Please "
				"use multipart/form-data format.");
		return false;
	}
	if (rc) {
		emu_reply_error(rq, 400, 5400,
				"Malformed multipart/form-data: missing or invalid boundary");
		return false;
	}
	if (emu_multipart_parse(rq->body.data ? rq->body.data : "", rq->body.len, boundary, form,
				&why)) {
		emu_reply_errorf(rq, 400, 5400, "Malformed multipart/form-data body: %s", why);
		return false;
	}
	return true;
}

bool emu_upload_text_fields(struct emu_req *rq, const struct emu_form *form, bool direct,
			    struct emu_image *im, const struct emu_part **expiry)
{
	struct upload_form f = {0};
	bool ok;

	collect(form, &f);
	ok = check_fields(rq, &f, im, direct);
	json_object_put(f.bracket_meta);
	if (ok && ((f.id && !im->id) || (f.creator && !im->creator))) {
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		ok = false;
	}
	if (expiry)
		*expiry = f.expiry;
	return ok;
}

struct emu_blob *emu_upload_file_part(struct emu_req *rq, const struct emu_form *form,
				      char **filename)
{
	struct upload_form f = {0};
	struct emu_blob *blob = NULL;
	size_t i, nfile = 0;

	*filename = NULL;
	for (i = 0; i < form->n; i++) {
		if (!strcmp(form->parts[i].name, "file")) {
			f.file = &form->parts[i];
			nfile++;
		}
	}
	if (nfile > 1) {
		emu_reply_error(rq, 400, 5400, "Field 'file' given more than once");
		return NULL;
	}
	if (!f.file) {
		emu_reply_error(rq, 400, 5400, "Provide a 'file' field to upload");
		return NULL;
	}
	if (!check_filename(rq, f.file))
		return NULL;
	blob = take_bytes(rq, &f, filename);
	if (blob && !emu_sniff(blob->data, blob->len)) {
		emu_reply_error(rq, 415, 5455, "Unsupported image format");
		emu_blob_unref(blob);
		free(*filename);
		*filename = NULL;
		blob = NULL;
	}
	return blob;
}

void emu_h_images_upload(struct emu *e, struct emu_req *rq)
{
	struct emu_form form;

	if (!emu_upload_parse_form(rq, &form))
		return;
	upload_from_form(e, rq, &form);
	emu_form_release(&form);
}

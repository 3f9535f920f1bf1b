/*
 * emu_images.c - image handlers except upload: list v1/v2, get, edit, delete, blob.
 */
#include "emu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PER_PAGE_MIN 10
#define PER_PAGE_MAX 10000
#define PER_PAGE_DEFAULT 1000
#define TOKEN_HEX 16

static bool get_vnames(struct emu *e, struct emu_req *rq, struct emu_vnames *vn)
{
	if (emu_delivery_names(e, rq, vn)) {
		emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return false;
	}
	return true;
}

static void reply_not_found(struct emu_req *rq)
{
	emu_reply_error(rq, 404, 5404, "Image not found");
}

/* Reads an optional integer query parameter; false (reply set) when invalid. */
static bool query_long(struct emu_req *rq, const char *name, long min, long max, long def,
		       long *out)
{
	const char *v = emu_req_query(rq, name, NULL);

	*out = def;
	if (!v)
		return true;
	if (emu_parse_long(v, min, max, out)) {
		emu_reply_errorf(rq, 400, 5400, "%s must be an integer between %ld and %ld", name,
				 min, max);
		return false;
	}
	return true;
}

static bool list_common(struct emu_req *rq, struct emu_list_args *a)
{
	long per_page;

	memset(a, 0, sizeof(*a));
	if (rq->query_bad) {
		emu_reply_error(rq, 400, 5400, "Malformed query string");
		return false;
	}
	if (!query_long(rq, "per_page", PER_PAGE_MIN, PER_PAGE_MAX, PER_PAGE_DEFAULT, &per_page))
		return false;
	a->per_page = (size_t)per_page;
	a->creator = emu_req_query(rq, "creator", NULL);
	return true;
}

void emu_h_images_list_v1(struct emu *e, struct emu_req *rq)
{
	struct emu_list_args a;
	struct emu_vnames vn;
	struct emu_buf b;
	long page;

	if (!list_common(rq, &a) || !query_long(rq, "page", 1, 1000000000L, 1, &page))
		return;
	a.page = (size_t)page;
	if (!get_vnames(e, rq, &vn))
		return;
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_puts(&b, "{\"images\":");
	emu_store_list_v1(&e->store, &a, &vn, &b);
	emu_buf_puts(&b, "}");
	emu_vnames_release(&vn);
	emu_reply_result_end(rq, &b);
}

/* Token: 'a' or 'd' (sort order) + 16 hex digits of the last returned seq. */
static bool parse_token(const char *t, bool asc, uint64_t *seq)
{
	uint64_t v = 0;
	size_t i;

	if (strlen(t) != TOKEN_HEX + 1 || t[0] != (asc ? 'a' : 'd'))
		return false;
	for (i = 1; i <= TOKEN_HEX; i++) {
		char c = t[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*seq = v;
	return v != 0;
}

void emu_h_images_list_v2(struct emu *e, struct emu_req *rq)
{
	struct emu_list_args a;
	struct emu_filters fs;
	struct emu_vnames vn;
	struct emu_buf b;
	const char *order, *tok;
	uint64_t next = 0;

	if (!list_common(rq, &a))
		return;
	order = emu_req_query(rq, "sort_order", NULL);
	if (order && strcmp(order, "asc") && strcmp(order, "desc")) {
		emu_reply_error(rq, 400, 5400, "sort_order must be 'asc' or 'desc'");
		return;
	}
	a.asc = order && !strcmp(order, "asc");
	tok = emu_req_query(rq, "continuation_token", NULL);
	if (tok && *tok) {
		if (!parse_token(tok, a.asc, &a.after_seq)) {
			emu_reply_error(rq, 400, 5400, "Invalid continuation_token");
			return;
		}
		a.has_after = true;
	}
	if (!emu_filters_parse(rq, &fs))
		return;
	a.filters = &fs;
	if (!get_vnames(e, rq, &vn)) {
		emu_filters_release(&fs);
		return;
	}
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_puts(&b, "{\"images\":");
	emu_store_list_v2(&e->store, &a, &vn, &b, &next);
	emu_filters_release(&fs);
	if (next)
		emu_buf_printf(&b, ",\"continuation_token\":\"%c%016" PRIx64 "\"}",
			       a.asc ? 'a' : 'd', next);
	else
		emu_buf_puts(&b, ",\"continuation_token\":null}");
	emu_vnames_release(&vn);
	emu_reply_result_end(rq, &b);
}

void emu_h_images_get(struct emu *e, struct emu_req *rq)
{
	struct emu_vnames vn;
	struct emu_buf b;
	int rc;

	if (!get_vnames(e, rq, &vn))
		return;
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	rc = emu_store_get_json(&e->store, rq->seg[0], rq->seglen[0], &vn, &b);
	emu_vnames_release(&vn);
	if (rc) {
		emu_buf_release(&b);
		reply_not_found(rq);
		return;
	}
	emu_reply_result_end(rq, &b);
}

/* Validates metadata (an object, <= 1024 bytes serialized); false with a reply when not. */
bool emu_check_metadata(struct emu_req *rq, struct json_object *m)
{
	size_t len = 0;

	if (!json_object_is_type(m, json_type_object)) {
		emu_reply_error(rq, 400, 5400, "metadata must be a JSON object");
		return false;
	}
	emu_json_compact(m, &len);
	if (len > EMU_MAX_META_BYTES) {
		emu_reply_errorf(rq, 400, 5400,
				 "metadata must not exceed %u bytes (got %zu bytes serialized)",
				 EMU_MAX_META_BYTES, len);
		return false;
	}
	return true;
}

bool emu_check_creator(struct emu_req *rq, const char *c, size_t n)
{
	if (n > EMU_MAX_CREATOR_BYTES) {
		emu_reply_errorf(rq, 400, 5400, "creator must be at most %u bytes",
				 EMU_MAX_CREATOR_BYTES);
		return false;
	}
	if (!emu_utf8_valid(c, n) || memchr(c, '\0', n)) {
		emu_reply_error(rq, 400, 5400, "creator must be valid UTF-8");
		return false;
	}
	return true;
}

/* Fills p from the PATCH body; false (reply set) on a validation error. */
static bool parse_patch(struct emu_req *rq, struct json_object *o, struct emu_patch *p)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, "metadata", &v)) {
		if (!emu_check_metadata(rq, v))
			return false;
		p->meta = v;
	}
	if (json_object_object_get_ex(o, "requireSignedURLs", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			emu_reply_error(rq, 400, 5400, "requireSignedURLs must be a boolean");
			return false;
		}
		p->set_signed = true;
		p->require_signed = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(o, "creator", &v)) {
		p->set_creator = true;
		if (json_object_is_type(v, json_type_string)) {
			p->creator = json_object_get_string(v);
			if (!emu_check_creator(rq, p->creator,
					       (size_t)json_object_get_string_len(v)))
				return false;
		} else if (!json_object_is_type(v, json_type_null)) {
			emu_reply_error(rq, 400, 5400, "creator must be a string or null");
			return false;
		}
	}
	return true;
}

void emu_h_images_edit(struct emu *e, struct emu_req *rq)
{
	struct emu_patch p = {0};
	struct json_object *o;
	struct emu_vnames vn;
	struct emu_buf b;
	int rc;

	o = rq->body.len ? emu_req_json_object(rq) : json_object_new_object();
	if (!o) {
		if (!rq->reply.ready)
			emu_reply_error(rq, 500, 5500, "Internal Server Error");
		return;
	}
	if (!parse_patch(rq, o, &p) || !get_vnames(e, rq, &vn)) {
		json_object_put(o);
		return;
	}
	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	rc = emu_store_edit(&e->store, rq->seg[0], rq->seglen[0], &p, &vn, &b);
	emu_vnames_release(&vn);
	json_object_put(o);
	if (rc) {
		emu_buf_release(&b);
		if (rc == -ENOENT)
			reply_not_found(rq);
		else if (rc == -EPERM)
			emu_reply_error(rq, 400, 5400,
					"Images with a custom ID cannot require signed URLs");
		else
			emu_reply_error(rq, 500, 5540, "Error received from the storage");
		return;
	}
	emu_reply_result_end(rq, &b);
}

void emu_h_images_delete(struct emu *e, struct emu_req *rq)
{
	int rc = emu_store_delete(&e->store, rq->seg[0], rq->seglen[0]);

	if (rc == -ENOENT) {
		reply_not_found(rq);
		return;
	}
	if (rc) {
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
		return;
	}
	emu_reply_result_empty(rq);
}

void emu_h_images_blob(struct emu *e, struct emu_req *rq)
{
	struct emu_blob *blob = emu_store_get_blob(&e->store, rq->seg[0], rq->seglen[0]);
	const char *ct;

	if (!blob) {
		reply_not_found(rq);
		return;
	}
	ct = emu_sniff(blob->data, blob->len);
	emu_reply_release(&rq->reply);
	rq->reply.status = 200;
	rq->reply.ctype = ct ? ct : "application/octet-stream";
	rq->reply.blob = blob;
	rq->reply.body = (char *)blob->data;
	rq->reply.len = blob->len;
	rq->reply.ready = true;
}

/*
 * emu_variants.c - named variants (images/v1/variants) and the variant name snapshot used
 * to build every image's variants[] URLs.
 *
 * The array stays sorted by id (so variants[] URLs come out sorted by name). `public` always
 * exists: it is created with {"fit":"scale-down","metadata":"none","width":1366,
 * "height":768} when missing and cannot be deleted (400/5400). Options: fit, metadata,
 * width, height, browser_ttl; create fills a missing fit/metadata with scale-down/none and
 * leaves a missing width/height unset; PATCH merges the given options into the existing
 * ones. One mutex guards the array and is held while variants.json is rewritten.
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BROWSER_TTL_MIN 3600L
#define BROWSER_TTL_MAX 31536000L

static const char *const fits[] = {"scale-down", "contain", "cover", "crop", "pad", NULL};
static const char *const metas[] = {"keep", "copyright", "none", NULL};

static bool in_set(const char *s, const char *const *set)
{
	for (; *set; set++) {
		if (!strcmp(s, *set))
			return true;
	}
	return false;
}

static bool id_ok(const char *s, size_t n)
{
	return emu_alnum_ok(s, n, EMU_MAX_VARIANT_ID);
}

static const char *opt_long(struct json_object *v, long min, long max, long *out, const char *msg)
{
	int64_t x;

	if (!json_object_is_type(v, json_type_int))
		return msg;
	x = json_object_get_int64(v);
	if (x < min || x > max)
		return msg;
	*out = (long)x;
	return NULL;
}

/* Merges options object o into v; returns an error message or NULL. */
static const char *parse_options(struct json_object *o, struct emu_variant *v)
{
	struct json_object_iterator it = json_object_iter_begin(o);
	struct json_object_iterator end = json_object_iter_end(o);
	static char unknown[160];
	const char *err = NULL;

	for (; !err && !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *k = json_object_iter_peek_name(&it);
		struct json_object *val = json_object_iter_peek_value(&it);
		const char *s =
		    json_object_is_type(val, json_type_string) ? json_object_get_string(val) : NULL;

		if (!strcmp(k, "fit")) {
			if (!s || !in_set(s, fits))
				return "options.fit must be one of scale-down, contain, cover, "
				       "crop, pad";
			snprintf(v->fit, sizeof(v->fit), "%s", s);
		} else if (!strcmp(k, "metadata")) {
			if (!s || !in_set(s, metas))
				return "options.metadata must be one of keep, copyright, none";
			snprintf(v->metadata, sizeof(v->metadata), "%s", s);
		} else if (!strcmp(k, "width")) {
			err = opt_long(val, 1, EMU_MAX_VARIANT_DIM, &v->width,
				       "options.width must be an integer between 1 and 12000");
		} else if (!strcmp(k, "height")) {
			err = opt_long(val, 1, EMU_MAX_VARIANT_DIM, &v->height,
				       "options.height must be an integer between 1 and 12000");
		} else if (!strcmp(k, "browser_ttl")) {
			err = opt_long(val, BROWSER_TTL_MIN, BROWSER_TTL_MAX, &v->browser_ttl,
				       "options.browser_ttl must be an integer between 3600 and "
				       "31536000");
		} else {
			/* only called with the caller's lock held or single-threaded at load */
			snprintf(unknown, sizeof(unknown), "Unknown variant option '%.64s'", k);
			return unknown;
		}
	}
	return err;
}

static void variant_json(const struct emu_variant *v, struct emu_buf *b)
{
	const char *sep = "";

	emu_buf_printf(b, "{\"id\":\"%s\",\"options\":{", v->id);
	if (v->fit[0]) {
		emu_buf_printf(b, "\"fit\":\"%s\"", v->fit);
		sep = ",";
	}
	if (v->metadata[0]) {
		emu_buf_printf(b, "%s\"metadata\":\"%s\"", sep, v->metadata);
		sep = ",";
	}
	if (v->width) {
		emu_buf_printf(b, "%s\"width\":%ld", sep, v->width);
		sep = ",";
	}
	if (v->height) {
		emu_buf_printf(b, "%s\"height\":%ld", sep, v->height);
		sep = ",";
	}
	if (v->browser_ttl)
		emu_buf_printf(b, "%s\"browser_ttl\":%ld", sep, v->browser_ttl);
	emu_buf_printf(b, "},\"neverRequireSignedURLs\":%s}",
		       v->never_require_signed ? "true" : "false");
}

static ssize_t find_locked(struct emu_variants *vs, const char *id)
{
	size_t i;

	for (i = 0; i < vs->n; i++) {
		if (!strcmp(vs->v[i].id, id))
			return (ssize_t)i;
	}
	return -1;
}

static int insert_locked(struct emu_variants *vs, const struct emu_variant *v)
{
	struct emu_variant *nv = realloc(vs->v, (vs->n + 1) * sizeof(*nv));
	size_t i = 0;

	if (!nv)
		return -ENOMEM;
	vs->v = nv;
	while (i < vs->n && strcmp(vs->v[i].id, v->id) < 0)
		i++;
	memmove(&vs->v[i + 1], &vs->v[i], (vs->n - i) * sizeof(*nv));
	vs->v[i] = *v;
	vs->n++;
	return 0;
}

static int persist_locked(struct emu_variants *vs)
{
	struct emu_buf b;
	size_t i;
	int rc;

	if (!vs->persist)
		return 0;
	emu_buf_init(&b, 0);
	emu_buf_puts(&b, "{\"variants\":[");
	for (i = 0; i < vs->n; i++) {
		if (i)
			emu_buf_add(&b, ",", 1);
		variant_json(&vs->v[i], &b);
	}
	emu_buf_puts(&b, "]}");
	rc = b.err ? b.err : emu_persist_write_doc(vs->persist, "variants.json", b.data, b.len);
	emu_buf_release(&b);
	if (rc)
		fprintf(stderr, "imagesfs-emulator: cannot write variants.json: %s\n",
			strerror(-rc));
	return rc;
}

static int load_one(struct emu_variants *vs, struct json_object *it)
{
	struct emu_variant v = {0};
	struct json_object *id, *opts, *nr;

	if (!json_object_object_get_ex(it, "id", &id) ||
	    !id_ok(json_object_get_string(id), (size_t)json_object_get_string_len(id)) ||
	    !json_object_object_get_ex(it, "options", &opts) ||
	    !json_object_is_type(opts, json_type_object) || parse_options(opts, &v))
		return -EBADMSG;
	snprintf(v.id, sizeof(v.id), "%s", json_object_get_string(id));
	if (json_object_object_get_ex(it, "neverRequireSignedURLs", &nr))
		v.never_require_signed = json_object_get_boolean(nr);
	if (find_locked(vs, v.id) >= 0)
		return -EBADMSG;
	return insert_locked(vs, &v);
}

static int load(struct emu_variants *vs)
{
	struct json_object *doc, *arr;
	size_t i;
	int err, rc = 0;

	doc = emu_persist_read_doc(vs->persist, "variants.json", &err);
	if (!doc)
		return err;
	if (!json_object_object_get_ex(doc, "variants", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		rc = -EBADMSG;
	for (i = 0; !rc && i < json_object_array_length(arr) && vs->n < EMU_MAX_VARIANTS; i++)
		rc = load_one(vs, json_object_array_get_idx(arr, i));
	json_object_put(doc);
	if (rc)
		fprintf(stderr, "imagesfs-emulator: malformed variants.json in data dir\n");
	return rc;
}

int emu_variants_init(struct emu_variants *vs, struct emu_persist *p)
{
	struct emu_variant pub = {
	    .id = "public", .fit = "scale-down", .metadata = "none", .width = 1366, .height = 768};
	int rc = 0;

	memset(vs, 0, sizeof(*vs));
	pthread_mutex_init(&vs->lock, NULL);
	vs->persist = p;
	if (p)
		rc = load(vs);
	if (!rc && find_locked(vs, "public") < 0) {
		rc = insert_locked(vs, &pub);
		if (!rc)
			rc = persist_locked(vs);
	}
	if (rc)
		emu_variants_release(vs);
	return rc;
}

void emu_variants_release(struct emu_variants *vs)
{
	free(vs->v);
	vs->v = NULL;
	vs->n = 0;
	pthread_mutex_destroy(&vs->lock);
}

int emu_variants_names(struct emu_variants *vs, const char *prefix, struct emu_vnames *out)
{
	size_t i, total = 0;
	char *p;

	pthread_mutex_lock(&vs->lock);
	for (i = 0; i < vs->n; i++)
		total += strlen(vs->v[i].id) + 1;
	out->names = malloc(vs->n * sizeof(char *) + total + 1);
	if (!out->names) {
		pthread_mutex_unlock(&vs->lock);
		return -ENOMEM;
	}
	/* one block: the pointer array, then the strings */
	p = (char *)(out->names + vs->n);
	for (i = 0; i < vs->n; i++) {
		size_t l = strlen(vs->v[i].id) + 1;

		memcpy(p, vs->v[i].id, l);
		out->names[i] = p;
		p += l;
	}
	out->n = vs->n;
	out->prefix = prefix;
	out->prefix_owned = NULL;
	pthread_mutex_unlock(&vs->lock);
	return 0;
}

bool emu_variants_find(struct emu_variants *vs, const char *id, size_t idlen,
		       struct emu_variant *out)
{
	ssize_t i;

	if (idlen == 0 || idlen > EMU_MAX_VARIANT_ID || strlen(id) != idlen)
		return false;
	pthread_mutex_lock(&vs->lock);
	i = find_locked(vs, id);
	if (i >= 0)
		*out = vs->v[i];
	pthread_mutex_unlock(&vs->lock);
	return i >= 0;
}

void emu_vnames_release(struct emu_vnames *vn)
{
	free(vn->names);
	free(vn->prefix_owned);
	vn->names = NULL;
	vn->prefix_owned = NULL;
	vn->n = 0;
}

static void reply_variant(struct emu_req *rq, const struct emu_variant *v)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_puts(&b, "{\"variant\":");
	variant_json(v, &b);
	emu_buf_puts(&b, "}");
	emu_reply_result_end(rq, &b);
}

void emu_h_variants_list(struct emu *e, struct emu_req *rq)
{
	struct emu_variants *vs = &e->variants;
	struct emu_buf b;
	size_t i;

	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_puts(&b, "{\"variants\":{");
	pthread_mutex_lock(&vs->lock);
	for (i = 0; i < vs->n; i++) {
		emu_buf_printf(&b, "%s\"%s\":", i ? "," : "", vs->v[i].id);
		variant_json(&vs->v[i], &b);
	}
	pthread_mutex_unlock(&vs->lock);
	emu_buf_puts(&b, "}}");
	emu_reply_result_end(rq, &b);
}

static void reply_variant_not_found(struct emu_req *rq)
{
	emu_reply_error(rq, 404, 5401, "Variant not found");
}

void emu_h_variants_get(struct emu *e, struct emu_req *rq)
{
	struct emu_variants *vs = &e->variants;
	ssize_t i;

	pthread_mutex_lock(&vs->lock);
	i = find_locked(vs, rq->seg[1]);
	if (i >= 0)
		reply_variant(rq, &vs->v[i]);
	pthread_mutex_unlock(&vs->lock);
	if (i < 0)
		reply_variant_not_found(rq);
}

/* Parses neverRequireSignedURLs if present; false with a reply when not a boolean. */
static bool take_never(struct emu_req *rq, struct json_object *o, struct emu_variant *v)
{
	struct json_object *nr;

	if (!json_object_object_get_ex(o, "neverRequireSignedURLs", &nr))
		return true;
	if (!json_object_is_type(nr, json_type_boolean)) {
		emu_reply_error(rq, 400, 5400, "neverRequireSignedURLs must be a boolean");
		return false;
	}
	v->never_require_signed = json_object_get_boolean(nr);
	return true;
}

static int create_locked(struct emu_variants *vs, struct emu_req *rq, struct json_object *opts,
			 struct emu_variant *v)
{
	const char *err;

	if (find_locked(vs, v->id) >= 0)
		return -EEXIST;
	if (vs->n >= EMU_MAX_VARIANTS)
		return -ENOSPC;
	err = parse_options(opts, v);
	if (err) {
		emu_reply_error(rq, 400, 5400, err);
		return -EINVAL;
	}
	if (!v->fit[0])
		snprintf(v->fit, sizeof(v->fit), "scale-down");
	if (!v->metadata[0])
		snprintf(v->metadata, sizeof(v->metadata), "none");
	return insert_locked(vs, v) ? -ENOMEM : persist_locked(vs);
}

void emu_h_variants_create(struct emu *e, struct emu_req *rq)
{
	struct emu_variants *vs = &e->variants;
	struct json_object *o = emu_req_json_object(rq), *id, *opts;
	struct emu_variant v = {0};
	int rc;

	if (!o)
		return;
	if (!json_object_object_get_ex(o, "id", &id) ||
	    !json_object_is_type(id, json_type_string) ||
	    !id_ok(json_object_get_string(id), (size_t)json_object_get_string_len(id))) {
		emu_reply_error(rq, 400, 5400, "Variant id must be 1-99 characters of [A-Za-z0-9]");
		goto out;
	}
	if (!json_object_object_get_ex(o, "options", &opts) ||
	    !json_object_is_type(opts, json_type_object)) {
		emu_reply_error(rq, 400, 5400, "options must be a JSON object");
		goto out;
	}
	if (!take_never(rq, o, &v))
		goto out;
	snprintf(v.id, sizeof(v.id), "%s", json_object_get_string(id));
	pthread_mutex_lock(&vs->lock);
	rc = create_locked(vs, rq, opts, &v);
	pthread_mutex_unlock(&vs->lock);
	if (!rc)
		reply_variant(rq, &v);
	else if (rc == -EEXIST)
		emu_reply_error(rq, 409, 5409,
				"Resource already exists. Verify the resource information and try "
				"again.");
	else if (rc == -ENOSPC)
		emu_reply_error(rq, 403, 5453, "The given account has reached a service limit");
	else if (rc != -EINVAL)
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
out:
	json_object_put(o);
}

void emu_h_variants_edit(struct emu *e, struct emu_req *rq)
{
	struct emu_variants *vs = &e->variants;
	struct json_object *o = emu_req_json_object(rq), *opts;
	struct emu_variant v;
	const char *err = NULL;
	ssize_t i;
	int rc = 0;

	if (!o)
		return;
	if (!json_object_object_get_ex(o, "options", &opts) ||
	    !json_object_is_type(opts, json_type_object)) {
		emu_reply_error(rq, 400, 5400, "options must be a JSON object");
		goto out;
	}
	pthread_mutex_lock(&vs->lock);
	i = find_locked(vs, rq->seg[1]);
	if (i >= 0) {
		v = vs->v[i];
		err = parse_options(opts, &v);
		if (!err && take_never(rq, o, &v)) {
			vs->v[i] = v;
			rc = persist_locked(vs);
		} else if (err) {
			emu_reply_error(rq, 400, 5400, err);
		}
	}
	pthread_mutex_unlock(&vs->lock);
	if (i < 0)
		reply_variant_not_found(rq);
	else if (rc)
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
	else if (!rq->reply.ready)
		reply_variant(rq, &v);
out:
	json_object_put(o);
}

void emu_h_variants_delete(struct emu *e, struct emu_req *rq)
{
	struct emu_variants *vs = &e->variants;
	ssize_t i;
	int rc = 0;

	if (!strcmp(rq->seg[1], "public")) {
		emu_reply_error(rq, 400, 5400, "The public variant cannot be deleted");
		return;
	}
	pthread_mutex_lock(&vs->lock);
	i = find_locked(vs, rq->seg[1]);
	if (i >= 0) {
		memmove(&vs->v[i], &vs->v[i + 1], (vs->n - (size_t)i - 1) * sizeof(*vs->v));
		vs->n--;
		rc = persist_locked(vs);
	}
	pthread_mutex_unlock(&vs->lock);
	if (i < 0) {
		reply_variant_not_found(rq);
		return;
	}
	if (rc) {
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
		return;
	}
	emu_reply_result_empty(rq);
}

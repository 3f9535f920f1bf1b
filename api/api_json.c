/*
 * api_json.c - parsing of API responses with json-c.
 *
 * Every json-c lookup is borrowed from the parsed document; what the caller keeps is
 * copied (strdup / json_object_to_json_string_ext) before the document is put. Parsing is
 * strict about types: a known field with the wrong type is a malformed response (-EIO with
 * a message naming the field), while `null` and absence are accepted for optional fields.
 * The text is parsed with a nesting cap and after the body size cap of api_http.c, so a
 * hostile server costs at most API_MAX_JSON_BYTES plus json-c's tree of it.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_PLAIN (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static int bad(char *msg, size_t msglen, const char *what, const char *field)
{
	if (msg && msglen)
		snprintf(msg, msglen, "malformed response: %s '%s'", what, field);
	return -EIO;
}

int api_json_parse(const char *text, size_t len, struct json_object **out, char *msg, size_t msglen)
{
	*out = NULL;
	if (len > INT32_MAX) /* json_tokener_parse_ex takes an int length */
		return bad(msg, msglen, "body too large for", "json");
	struct json_tokener *tok = json_tokener_new_ex(API_JSON_MAX_DEPTH);
	if (!tok) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = json_tokener_parse_ex(tok, text ? text : "", (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	int truncated = je == json_tokener_continue;
	if (truncated && len > 0) {
		/* A bare number or literal at the very end needs a terminator to complete. */
		o = json_tokener_parse_ex(tok, "", 1);
		je = json_tokener_get_error(tok);
		end = len;
	}
	json_tokener_free(tok);
	if (je != json_tokener_success || !o) {
		json_object_put(o);
		snprintf(msg, msglen, "malformed response: invalid JSON (%s)",
			 truncated ? "truncated" : json_tokener_error_desc(je));
		return -EIO;
	}
	for (; end < len; end++) {
		char ch = text[end];
		if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') {
			json_object_put(o);
			snprintf(msg, msglen, "malformed response: trailing data after JSON");
			return -EIO;
		}
	}
	*out = o;
	return 0;
}

/* Optional string member: absent or null -> *out NULL. Copies. */
static int get_str(struct json_object *o, const char *key, int required, char **out, char *msg,
		   size_t msglen)
{
	struct json_object *v = NULL;
	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return required ? bad(msg, msglen, "missing string", key) : 0;
	if (!json_object_is_type(v, json_type_string))
		return bad(msg, msglen, "expected a string for", key);
	*out = strndup(json_object_get_string(v), (size_t)json_object_get_string_len(v));
	if (!*out) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* Optional boolean member: absent or null -> 0. */
static int get_bool(struct json_object *o, const char *key, int *out, char *msg, size_t msglen)
{
	struct json_object *v = NULL;
	*out = 0;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return bad(msg, msglen, "expected a boolean for", key);
	*out = json_object_get_boolean(v) ? 1 : 0;
	return 0;
}

/* Compact JSON text of an object member; absent or null -> NULL. */
static int get_obj_text(struct json_object *o, const char *key, int required, char **out, char *msg,
			size_t msglen)
{
	struct json_object *v = NULL;
	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return required ? bad(msg, msglen, "missing object", key) : 0;
	if (!json_object_is_type(v, json_type_object))
		return bad(msg, msglen, "expected an object for", key);
	const char *s = json_object_to_json_string_ext(v, JSON_PLAIN);
	*out = s ? strdup(s) : NULL;
	if (!*out) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int get_int64(struct json_object *o, const char *key, int64_t *out, char *msg, size_t msglen)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return bad(msg, msglen, "missing number", key);
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (d >= -9.2e18 && d <= 9.2e18 && d == (double)(int64_t)d) {
			*out = (int64_t)d;
			return 0;
		}
	}
	return bad(msg, msglen, "expected an integer for", key);
}

int api_envelope(struct json_object *root, long http_status, struct json_object **result,
		 struct api_err *err)
{
	struct json_object *v = NULL, *errs = NULL;
	int ok_status = http_status >= 200 && http_status < 300;

	*result = NULL;
	err->http_status = http_status;
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err->message, sizeof(err->message), "malformed response: not an object");
		return ok_status ? -EIO : -api_errno_map(http_status, 0, 0);
	}
	if (json_object_object_get_ex(root, "errors", &errs) &&
	    json_object_is_type(errs, json_type_array) && json_object_array_length(errs) > 0) {
		struct json_object *e0 = json_object_array_get_idx(errs, 0), *code, *m;
		if (json_object_is_type(e0, json_type_object)) {
			if (json_object_object_get_ex(e0, "code", &code) &&
			    json_object_is_type(code, json_type_int))
				err->cf_code = json_object_get_int(code);
			if (json_object_object_get_ex(e0, "message", &m) &&
			    json_object_is_type(m, json_type_string))
				api_strlcpy(err->message, json_object_get_string(m),
					    sizeof(err->message));
		}
	}
	int success = json_object_object_get_ex(root, "success", &v) &&
		      json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
	if (ok_status && success) {
		err->cf_code = 0;
		err->message[0] = '\0';
		json_object_object_get_ex(root, "result", result);
		return 0;
	}
	if (!err->message[0])
		snprintf(err->message, sizeof(err->message), "%s",
			 ok_status ? "malformed response: success is not true"
				   : "request failed without an error message");
	if (ok_status && !err->cf_code)
		return -EIO;
	return -api_errno_map(http_status, err->cf_code, 0);
}

static int parse_variants(struct json_object *o, struct api_image *out, char *msg, size_t msglen)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(o, "variants", &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return bad(msg, msglen, "expected an array for", "variants");
	size_t n = json_object_array_length(v);
	if (n == 0)
		return 0;
	out->variants = calloc(n, sizeof(char *));
	if (!out->variants)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(v, i);
		if (!json_object_is_type(s, json_type_string))
			return bad(msg, msglen, "expected strings in", "variants");
		out->variants[i] = strdup(json_object_get_string(s));
		if (!out->variants[i])
			return -ENOMEM;
		out->n_variants = i + 1;
	}
	return 0;
}

static int parse_image_fields(struct json_object *o, struct api_image *out, char *msg,
			      size_t msglen)
{
	char *uploaded = NULL;
	int rc;

	if ((rc = get_str(o, "id", 1, &out->id, msg, msglen)) ||
	    (rc = get_str(o, "filename", 0, &out->filename, msg, msglen)) ||
	    (rc = get_str(o, "creator", 0, &out->creator, msg, msglen)) ||
	    (rc = get_obj_text(o, "meta", 0, &out->meta_json, msg, msglen)) ||
	    (rc = get_bool(o, "requireSignedURLs", &out->require_signed_urls, msg, msglen)) ||
	    (rc = get_bool(o, "draft", &out->draft, msg, msglen)) ||
	    (rc = parse_variants(o, out, msg, msglen)) ||
	    (rc = get_str(o, "uploaded", 0, &uploaded, msg, msglen)))
		return rc;
	if (uploaded && api_parse_rfc3339(uploaded, &out->uploaded_ms) != 0)
		rc = bad(msg, msglen, "bad RFC 3339 time in", "uploaded");
	free(uploaded);
	return rc;
}

int api_parse_image(struct json_object *o, struct api_image *out, char *msg, size_t msglen)
{
	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(o, json_type_object))
		return bad(msg, msglen, "expected an object for", "image");
	int rc = parse_image_fields(o, out, msg, msglen);
	if (rc == -ENOMEM)
		snprintf(msg, msglen, "out of memory");
	if (rc)
		api_image_release(out);
	return rc;
}

void api_image_release(struct api_image *img)
{
	if (!img)
		return;
	free(img->id);
	free(img->filename);
	free(img->creator);
	free(img->meta_json);
	for (size_t i = 0; i < img->n_variants; i++)
		free(img->variants[i]);
	free(img->variants);
	memset(img, 0, sizeof(*img));
}

static int get_token(struct json_object *result, char *token, size_t toklen, char *msg,
		     size_t msglen)
{
	struct json_object *t = NULL;
	token[0] = '\0';
	if (!json_object_object_get_ex(result, "continuation_token", &t) ||
	    json_object_is_type(t, json_type_null))
		return 0;
	if (!json_object_is_type(t, json_type_string))
		return bad(msg, msglen, "expected a string for", "continuation_token");
	size_t n = (size_t)json_object_get_string_len(t);
	if (n >= toklen || n > API_MAX_TOKEN_LEN || memchr(json_object_get_string(t), 0, n))
		return bad(msg, msglen, "oversized or binary", "continuation_token");
	memcpy(token, json_object_get_string(t), n);
	token[n] = '\0';
	return 0;
}

int api_parse_list_page(struct json_object *result, api_image_cb cb, void *arg, size_t *n_out,
			char *token, size_t toklen, char *msg, size_t msglen)
{
	struct json_object *arr = NULL;

	*n_out = 0;
	if (toklen)
		token[0] = '\0';
	if (!json_object_is_type(result, json_type_object))
		return bad(msg, msglen, "expected an object for", "result");
	if (!json_object_object_get_ex(result, "images", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return bad(msg, msglen, "expected an array for", "images");
	int rc = toklen ? get_token(result, token, toklen, msg, msglen) : 0;
	if (rc)
		return rc;
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct api_image img;
		rc = api_parse_image(json_object_array_get_idx(arr, i), &img, msg, msglen);
		if (rc)
			return rc;
		*n_out = i + 1;
		rc = cb ? cb(&img, arg) : 0;
		api_image_release(&img);
		if (rc)
			return rc;
	}
	return 0;
}

void api_key_list_release(struct api_key_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->keys[i].name);
		free(l->keys[i].value);
	}
	free(l->keys);
	memset(l, 0, sizeof(*l));
}

int api_parse_keys(struct json_object *result, struct api_key_list *out, char *msg, size_t msglen)
{
	struct json_object *arr = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(result, json_type_object) ||
	    !json_object_object_get_ex(result, "keys", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return bad(msg, msglen, "expected an array for", "keys");
	size_t n = json_object_array_length(arr);
	out->keys = n ? calloc(n, sizeof(*out->keys)) : NULL;
	if (n && !out->keys)
		return -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		struct json_object *k = json_object_array_get_idx(arr, i);
		struct api_key *dst = &out->keys[i];
		out->n = i + 1;
		if (!json_object_is_type(k, json_type_object))
			rc = bad(msg, msglen, "expected objects in", "keys");
		else if (!(rc = get_str(k, "name", 1, &dst->name, msg, msglen)))
			rc = get_str(k, "value", 1, &dst->value, msg, msglen);
	}
	if (rc)
		api_key_list_release(out);
	return rc;
}

void api_variant_release(struct api_variant *v)
{
	if (!v)
		return;
	free(v->id);
	free(v->options_json);
	memset(v, 0, sizeof(*v));
}

void api_variant_list_release(struct api_variant_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		api_variant_release(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int api_parse_variant(struct json_object *o, const char *fallback_id, struct api_variant *out,
		      char *msg, size_t msglen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(o, json_type_object))
		return bad(msg, msglen, "expected an object for", "variant");
	rc = get_str(o, "id", fallback_id == NULL, &out->id, msg, msglen);
	if (!rc && !out->id && !(out->id = strdup(fallback_id)))
		rc = -ENOMEM;
	if (!rc)
		rc = get_obj_text(o, "options", 1, &out->options_json, msg, msglen);
	if (!rc)
		rc = get_bool(o, "neverRequireSignedURLs", &out->never_require_signed_urls, msg,
			      msglen);
	if (rc)
		api_variant_release(out);
	return rc;
}

static int variants_from_map(struct json_object *map, struct api_variant_list *out, char *msg,
			     size_t msglen)
{
	size_t n = (size_t)json_object_object_length(map), i = 0;
	int rc = 0;
	out->v = n ? calloc(n, sizeof(*out->v)) : NULL;
	if (n && !out->v)
		return -ENOMEM;
	json_object_object_foreach(map, key, val)
	{
		if (rc || i >= n)
			break;
		rc = api_parse_variant(val, key, &out->v[i], msg, msglen);
		if (!rc)
			out->n = ++i;
	}
	return rc;
}

int api_parse_variants(struct json_object *result, struct api_variant_list *out, char *msg,
		       size_t msglen)
{
	struct json_object *v = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(result, json_type_object) ||
	    !json_object_object_get_ex(result, "variants", &v))
		return bad(msg, msglen, "missing object", "variants");
	if (json_object_is_type(v, json_type_object)) {
		rc = variants_from_map(v, out, msg, msglen);
	} else if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);
		out->v = n ? calloc(n, sizeof(*out->v)) : NULL;
		if (n && !out->v)
			return -ENOMEM;
		for (size_t i = 0; i < n && !rc; i++) {
			rc = api_parse_variant(json_object_array_get_idx(v, i), NULL, &out->v[i],
					       msg, msglen);
			if (!rc)
				out->n = i + 1;
		}
	} else {
		rc = bad(msg, msglen, "expected an object for", "variants");
	}
	if (rc)
		api_variant_list_release(out);
	return rc;
}

int api_parse_stats(struct json_object *result, struct api_stats *out, char *msg, size_t msglen)
{
	struct json_object *count = NULL;
	struct api_stats s;
	int rc;

	if (!json_object_is_type(result, json_type_object) ||
	    !json_object_object_get_ex(result, "count", &count) ||
	    !json_object_is_type(count, json_type_object))
		return bad(msg, msglen, "missing object", "count");
	if ((rc = get_int64(count, "allowed", &s.allowed, msg, msglen)) ||
	    (rc = get_int64(count, "current", &s.current, msg, msglen)))
		return rc;
	*out = s;
	return 0;
}

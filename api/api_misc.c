/*
 * api_misc.c - signing keys, usage stats and variants.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*parse_fn)(struct json_object *result, void *out, char *msg, size_t msglen);

/* Runs one JSON request and hands `result` to parse (NULL parse: result ignored).
 * esc is percent-encoded into the URL between pre and post. */
static int json_call(struct api_client *c, const char *method, enum api_idem idem, const char *pre,
		     const char *esc, const char *post, const char *body, parse_fn parse, void *out,
		     int *outcome_unknown, struct api_err *err)
{
	struct api_req r;
	struct json_object *root, *result;
	char *url = api_url(c, pre, esc, post);
	if (!url)
		return api_fail(err, ENOMEM, "out of memory");
	api_req_init(&r, method, url, idem);
	r.json_body = body;
	int rc = api_http_json(c, &r, &root, &result, err);
	if (!rc && parse) {
		rc = parse(result, out, err->message, sizeof(err->message));
		if (rc)
			err->http_status = r.status;
	}
	if (outcome_unknown)
		*outcome_unknown = r.outcome_unknown;
	json_object_put(root);
	api_req_release(&r);
	free(url);
	return rc;
}

static int name_ok(const char *name, const char *what, struct api_err *err)
{
	if (!name || !*name)
		return api_fail(err, EINVAL, "empty %s name", what);
	return 0;
}

/* ---- keys ---------------------------------------------------------------------- */

static int parse_keys(struct json_object *result, void *out, char *msg, size_t msglen)
{
	struct api_key_list tmp;
	int rc = api_parse_keys(result, &tmp, msg, msglen);
	if (!rc && out)
		*(struct api_key_list *)out = tmp;
	else if (!rc)
		api_key_list_release(&tmp);
	return rc;
}

int api_keys_list(struct api_client *c, struct api_key_list *out, struct api_err *err)
{
	struct api_err local;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	return json_call(c, "GET", API_IDEMPOTENT, "/v1/keys", NULL, NULL, NULL, parse_keys, out,
			 NULL, err);
}

int api_key_put(struct api_client *c, const char *name, struct api_key_list *out,
		struct api_err *err)
{
	struct api_err local;
	if (!err)
		err = &local;
	if (out)
		memset(out, 0, sizeof(*out));
	if (name_ok(name, "key", err))
		return -EINVAL;
	return json_call(c, "PUT", API_IDEMPOTENT, "/v1/keys/", name, NULL, NULL, parse_keys, out,
			 NULL, err);
}

int api_key_delete(struct api_client *c, const char *name, struct api_key_list *out,
		   struct api_err *err)
{
	struct api_err local;
	int unknown = 0;
	if (!err)
		err = &local;
	if (out)
		memset(out, 0, sizeof(*out));
	if (name_ok(name, "key", err))
		return -EINVAL;
	int rc = json_call(c, "DELETE", API_IDEMPOTENT, "/v1/keys/", name, NULL, NULL, parse_keys,
			   out, &unknown, err);
	/* Gone on a retry after an attempt that may have deleted it: that attempt did. */
	if (rc == -ENOENT && unknown) {
		memset(err, 0, sizeof(*err));
		rc = out ? api_keys_list(c, out, err) : 0;
	}
	return rc;
}

/* ---- stats --------------------------------------------------------------------- */

static int parse_stats(struct json_object *result, void *out, char *msg, size_t msglen)
{
	return api_parse_stats(result, out, msg, msglen);
}

int api_stats_get(struct api_client *c, struct api_stats *out, struct api_err *err)
{
	struct api_err local;
	struct api_stats tmp;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	int rc = json_call(c, "GET", API_IDEMPOTENT, "/v1/stats", NULL, NULL, NULL, parse_stats,
			   &tmp, NULL, err);
	if (!rc)
		*out = tmp;
	return rc;
}

/* ---- variants ------------------------------------------------------------------- */

static int parse_variants(struct json_object *result, void *out, char *msg, size_t msglen)
{
	return api_parse_variants(result, out, msg, msglen);
}

/* result: {"variant": {...}} */
static int parse_one_variant(struct json_object *result, void *out, char *msg, size_t msglen)
{
	struct json_object *v = NULL;
	struct api_variant tmp;
	if (!json_object_is_type(result, json_type_object) ||
	    !json_object_object_get_ex(result, "variant", &v)) {
		snprintf(msg, msglen, "malformed response: missing object 'variant'");
		return -EIO;
	}
	int rc = api_parse_variant(v, NULL, &tmp, msg, msglen);
	if (!rc && out)
		*(struct api_variant *)out = tmp;
	else if (!rc)
		api_variant_release(&tmp);
	return rc;
}

int api_variants_list(struct api_client *c, struct api_variant_list *out, struct api_err *err)
{
	struct api_err local;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	return json_call(c, "GET", API_IDEMPOTENT, "/v1/variants", NULL, NULL, NULL, parse_variants,
			 out, NULL, err);
}

int api_variant_get(struct api_client *c, const char *id, struct api_variant *out,
		    struct api_err *err)
{
	struct api_err local;
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	if (name_ok(id, "variant", err))
		return -EINVAL;
	return json_call(c, "GET", API_IDEMPOTENT, "/v1/variants/", id, NULL, NULL,
			 parse_one_variant, out, NULL, err);
}

/* {"id":..., "options":{...}, "neverRequireSignedURLs":bool}; id NULL for edits. */
static char *variant_body(const char *id, const char *options_json, int never_require,
			  struct api_err *err, int *rc)
{
	struct json_object *o = json_object_new_object(), *opts = NULL;
	char msg[128];
	char *s = NULL;
	*rc = 0;
	if (!o)
		*rc = api_fail(err, ENOMEM, "out of memory");
	else if (!options_json ||
		 api_json_parse(options_json, strlen(options_json), &opts, msg, sizeof(msg)) ||
		 !json_object_is_type(opts, json_type_object))
		*rc = api_fail(err, EINVAL, "variant options are not a JSON object");
	if (!*rc) {
		if (id)
			json_object_object_add(o, "id", json_object_new_string(id));
		json_object_object_add(o, "options", opts);
		opts = NULL;
		if (never_require >= 0)
			json_object_object_add(o, "neverRequireSignedURLs",
					       json_object_new_boolean(never_require != 0));
		const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		s = t ? strdup(t) : NULL;
		if (!s)
			*rc = api_fail(err, ENOMEM, "out of memory");
	}
	json_object_put(opts);
	json_object_put(o);
	return s;
}

int api_variant_create(struct api_client *c, const char *id, const char *options_json,
		       int never_require, struct api_variant *out, struct api_err *err)
{
	struct api_err local;
	int rc, unknown = 0;
	if (!err)
		err = &local;
	if (out)
		memset(out, 0, sizeof(*out));
	if (name_ok(id, "variant", err))
		return -EINVAL;
	char *body = variant_body(id, options_json, never_require, err, &rc);
	if (rc)
		return rc;
	rc = json_call(c, "POST", API_CREATE_WITH_ID, "/v1/variants", NULL, NULL, body,
		       parse_one_variant, out, &unknown, err);
	/* "Already exists" on a retry after an attempt that may have created it. */
	if (rc == -EEXIST && unknown) {
		struct api_variant v;
		if (api_variant_get(c, id, &v, NULL) == 0) {
			memset(err, 0, sizeof(*err));
			if (out)
				*out = v;
			else
				api_variant_release(&v);
			rc = 0;
		}
	}
	free(body);
	return rc;
}

int api_variant_edit(struct api_client *c, const char *id, const char *options_json,
		     int never_require, struct api_variant *out, struct api_err *err)
{
	struct api_err local;
	int rc;
	if (!err)
		err = &local;
	if (out)
		memset(out, 0, sizeof(*out));
	if (name_ok(id, "variant", err))
		return -EINVAL;
	char *body = variant_body(NULL, options_json, never_require, err, &rc);
	if (rc)
		return rc;
	rc = json_call(c, "PATCH", API_IDEMPOTENT, "/v1/variants/", id, NULL, body,
		       parse_one_variant, out, NULL, err);
	free(body);
	return rc;
}

int api_variant_delete(struct api_client *c, const char *id, struct api_err *err)
{
	struct api_err local;
	int unknown = 0;
	if (!err)
		err = &local;
	if (name_ok(id, "variant", err))
		return -EINVAL;
	int rc = json_call(c, "DELETE", API_IDEMPOTENT, "/v1/variants/", id, NULL, NULL, NULL, NULL,
			   &unknown, err);
	if (rc == -ENOENT && unknown) {
		memset(err, 0, sizeof(*err));
		rc = 0;
	}
	return rc;
}

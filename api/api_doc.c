/*
 * api_doc.c - validation and formatting of the JSON documents users see through the
 * filesystem (metadata objects, variant files, the stats file). Kept in api/ because only
 * this layer links json-c.
 */
#include "api_doc.h"
#include "api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* Deepest nesting accepted in a user-written document. */
#define API_DOC_MAX_DEPTH 32

/* json-c 0.16 accepts 'single-quoted' strings even in strict mode; JSON does not. */
static int has_bare_single_quote(const char *text, size_t len)
{
	int in_string = 0;

	for (size_t i = 0; i < len; i++) {
		if (in_string) {
			if (text[i] == '\\')
				i++;
			else if (text[i] == '"')
				in_string = 0;
		} else if (text[i] == '"') {
			in_string = 1;
		} else if (text[i] == '\'') {
			return 1;
		}
	}
	return 0;
}

/* Parses exactly one JSON value from text[0..len); trailing whitespace only. */
static struct json_object *doc_parse(const char *text, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t used;

	if (len > (size_t)INT32_MAX || has_bare_single_quote(text, len))
		return NULL;
	tok = json_tokener_new_ex(API_DOC_MAX_DEPTH);
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* An incomplete document (json_tokener_continue) yields NULL too. */
	obj = json_tokener_parse_ex(tok, text, (int)len);
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!obj)
		return NULL;
	for (; used < len; used++) {
		if (!strchr(" \t\r\n", text[used])) {
			json_object_put(obj);
			return NULL;
		}
	}
	return obj;
}

static char *dup_compact(struct json_object *obj)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE);
	return s ? strdup(s) : NULL;
}

int api_json_object_normalize(const char *text, size_t len, char **compact_out)
{
	struct json_object *obj = doc_parse(text, len);
	int ret = 0;

	if (!obj)
		return -EINVAL;
	if (!json_object_is_type(obj, json_type_object)) {
		ret = -EINVAL;
	} else if (compact_out) {
		*compact_out = dup_compact(obj);
		if (!*compact_out)
			ret = -ENOMEM;
	}
	json_object_put(obj);
	return ret;
}

int api_variant_doc_parse(const char *text, size_t len, char **options_out, int *never_out)
{
	struct json_object *root = doc_parse(text, len);
	struct json_object *options = NULL;
	int never = -1, ret = 0;

	*options_out = NULL;
	*never_out = -1;
	if (!root)
		return -EINVAL;
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return -EINVAL;
	}
	json_object_object_foreach(root, key, val)
	{
		if (strcmp(key, "options") == 0 && json_object_is_type(val, json_type_object))
			options = val;
		else if (strcmp(key, "neverRequireSignedURLs") == 0 &&
			 json_object_is_type(val, json_type_boolean))
			never = json_object_get_boolean(val) ? 1 : 0;
		else if (strcmp(key, "id") != 0)
			ret = -EINVAL;
	}
	if (!options)
		ret = -EINVAL;
	if (ret == 0) {
		*options_out = dup_compact(options);
		if (!*options_out)
			ret = -ENOMEM;
		*never_out = never;
	}
	json_object_put(root);
	return ret;
}

char *api_variant_doc_format(const struct api_variant *v)
{
	struct json_object *root = json_object_new_object();
	struct json_object *options = NULL;
	char *out = NULL;
	const char *s;
	size_t n;

	if (!root)
		return NULL;
	if (v->options_json)
		options = doc_parse(v->options_json, strlen(v->options_json));
	if (!options)
		options = json_object_new_object();
	json_object_object_add(root, "options", options);
	json_object_object_add(root, "neverRequireSignedURLs",
			       json_object_new_boolean(v->never_require_signed_urls != 0));
	s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s) {
		n = strlen(s);
		out = malloc(n + 2);
		if (out) {
			memcpy(out, s, n);
			out[n] = '\n';
			out[n + 1] = '\0';
		}
	}
	json_object_put(root);
	return out;
}

int api_stats_doc_format(long long allowed, long long current, char *buf, size_t len)
{
	return snprintf(buf, len, "{\"count\":{\"allowed\":%lld,\"current\":%lld}}\n", allowed,
			current);
}

/*
 * api_stamp.c - encoding of the stamp (mtime, size) in an image's metadata object. See
 * api_stamp.h for the format. Kept in api/ because only this layer links json-c.
 *
 * The value is parsed strictly (tag, then each field once, in order, digits only) so that a
 * foreign value never turns into a plausible-looking mtime or size: anything else is "no
 * stamp". The user's part keeps its members in their order; the stamp goes last.
 */
#include "api_stamp.h"
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#define STAMP_TAG "v1"

void api_stamp_init(struct api_stamp *st)
{
	memset(st, 0, sizeof(*st));
	st->size = -1;
}

int api_stamp_empty(const struct api_stamp *st)
{
	return !st->has_mtime && st->size < 0;
}

int api_stamp_format(const struct api_stamp *st, char *buf, size_t len)
{
	char m[48] = "", s[32] = "";
	if (api_stamp_empty(st) || st->mtime_nsec < 0 || st->mtime_nsec > 999999999)
		return -EINVAL;
	if (st->has_mtime)
		snprintf(m, sizeof(m), " m=%" PRId64 ".%09" PRId32, st->mtime_sec, st->mtime_nsec);
	if (st->size >= 0)
		snprintf(s, sizeof(s), " s=%" PRId64, st->size);
	int n = snprintf(buf, len, STAMP_TAG "%s%s", m, s);
	return n < 0 || (size_t)n >= len ? -EINVAL : n;
}

/* Parses "[-]DIGITS" at *p (at most 19 digits), advancing *p. 0 or -EINVAL. */
static int parse_int(const char **p, int allow_minus, int64_t *out)
{
	const char *s = *p;
	int neg = allow_minus && *s == '-';
	s += neg;
	int64_t v = 0;
	int digits = 0;
	while (*s >= '0' && *s <= '9') {
		if (++digits > 18)
			return -EINVAL;
		v = v * 10 + (*s++ - '0');
	}
	if (!digits)
		return -EINVAL;
	*out = neg ? -v : v;
	*p = s;
	return 0;
}

static int parse_mtime(const char **p, struct api_stamp *st)
{
	int64_t sec, nsec;
	const char *s = *p;
	if (parse_int(&s, 1, &sec) < 0 || *s++ != '.')
		return -EINVAL;
	const char *f = s;
	if (parse_int(&s, 0, &nsec) < 0 || s - f != 9)
		return -EINVAL;
	st->has_mtime = 1;
	st->mtime_sec = sec;
	st->mtime_nsec = (int32_t)nsec;
	*p = s;
	return 0;
}

int api_stamp_parse(const char *value, struct api_stamp *st)
{
	api_stamp_init(st);
	if (!value || strncmp(value, STAMP_TAG, strlen(STAMP_TAG)) != 0)
		return -EINVAL;
	const char *p = value + strlen(STAMP_TAG);
	if (strncmp(p, " m=", 3) == 0) {
		p += 3;
		if (parse_mtime(&p, st) < 0)
			goto bad;
	}
	if (strncmp(p, " s=", 3) == 0) {
		p += 3;
		if (parse_int(&p, 0, &st->size) < 0)
			goto bad;
	}
	if (*p || api_stamp_empty(st))
		goto bad;
	return 0;
bad:
	api_stamp_init(st);
	return -EINVAL;
}

static struct json_object *parse_object(const char *text)
{
	struct json_object *o = json_tokener_parse(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static char *dup_compact(struct json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE);
	return s ? strdup(s) : NULL;
}

int api_stamp_split(const char *meta, struct api_stamp *st, char **user_out)
{
	api_stamp_init(st);
	*user_out = NULL;
	if (!meta)
		return 0;
	struct json_object *o = parse_object(meta), *v;
	if (!o) {
		*user_out = strdup(meta);
		return *user_out ? 0 : -ENOMEM;
	}
	if (json_object_object_get_ex(o, API_STAMP_KEY, &v)) {
		if (json_object_is_type(v, json_type_string))
			api_stamp_parse(json_object_get_string(v), st);
		json_object_object_del(o, API_STAMP_KEY);
	}
	int rc = 0;
	if (json_object_object_length(o) > 0 && !(*user_out = dup_compact(o)))
		rc = -ENOMEM;
	json_object_put(o);
	return rc;
}

int api_stamp_join(const char *user, const struct api_stamp *st, char **out)
{
	struct json_object *o = user ? parse_object(user) : json_object_new_object();
	char val[API_STAMP_VALUE_MAX];
	int rc = 0;
	*out = NULL;
	if (!o)
		return user ? -EINVAL : -ENOMEM;
	json_object_object_del(o, API_STAMP_KEY);
	if (st && !api_stamp_empty(st)) {
		struct json_object *s = NULL;
		if (api_stamp_format(st, val, sizeof(val)) < 0)
			rc = -EINVAL;
		else if (!(s = json_object_new_string(val)) ||
			 json_object_object_add(o, API_STAMP_KEY, s) < 0) {
			json_object_put(s);
			rc = -ENOMEM;
		}
	}
	if (rc == 0 && !(*out = dup_compact(o)))
		rc = -ENOMEM;
	if (rc == 0 && strlen(*out) > API_MAX_METADATA_BYTES) {
		free(*out);
		*out = NULL;
		rc = -E2BIG;
	}
	json_object_put(o);
	return rc;
}

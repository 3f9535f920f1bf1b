/*
 * emu_filter.c - v2 list metadata filters: meta.<field>[.<sub>...][<operator>]=<value>.
 *
 * Operators (reference §1.10): eq, eq:string, eq:number, eq:boolean, gt/gte/lt/lte (with or
 * without :number; numbers only), in, in:string, in:number (pipe-separated, at most 10
 * values). At most 5 filters and 5 nesting levels; filters are ANDed; an image without the
 * field does not match. Untyped eq/in compare with the stored value's JSON type (a string
 * compares as text, a number numerically, a boolean as true/false).
 * Cost: an image's metadata is parsed only when a filter is present (a few µs each).
 */
#include "emu.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FOP_EQ, FOP_GT, FOP_GTE, FOP_LT, FOP_LTE, FOP_IN };
enum { FTYPE_ANY, FTYPE_STRING, FTYPE_NUMBER, FTYPE_BOOLEAN };

static const struct {
	const char *name;
	int op;
	int type;
} ops[] = {
    {"eq", FOP_EQ, FTYPE_ANY},		 {"eq:string", FOP_EQ, FTYPE_STRING},
    {"eq:number", FOP_EQ, FTYPE_NUMBER}, {"eq:boolean", FOP_EQ, FTYPE_BOOLEAN},
    {"gt", FOP_GT, FTYPE_NUMBER},	 {"gt:number", FOP_GT, FTYPE_NUMBER},
    {"gte", FOP_GTE, FTYPE_NUMBER},	 {"gte:number", FOP_GTE, FTYPE_NUMBER},
    {"lt", FOP_LT, FTYPE_NUMBER},	 {"lt:number", FOP_LT, FTYPE_NUMBER},
    {"lte", FOP_LTE, FTYPE_NUMBER},	 {"lte:number", FOP_LTE, FTYPE_NUMBER},
    {"in", FOP_IN, FTYPE_ANY},		 {"in:string", FOP_IN, FTYPE_STRING},
    {"in:number", FOP_IN, FTYPE_NUMBER},
};

void emu_filters_release(struct emu_filters *fs)
{
	size_t i, k;

	for (i = 0; i < fs->n; i++) {
		for (k = 0; k < fs->f[i].depth; k++)
			free(fs->f[i].path[k]);
		for (k = 0; k < fs->f[i].nvalues; k++)
			free(fs->f[i].values[k]);
	}
	fs->n = 0;
}

static bool parse_number(const char *s, double *out)
{
	char *end;

	if (!*s)
		return false;
	*out = strtod(s, &end);
	return *end == '\0' && isfinite(*out);
}

/* Splits "a.b.c" into path[]; false when a part is empty or the depth exceeds the limit. */
static bool split_path(struct emu_mfilter *f, const char *p, size_t n)
{
	while (n) {
		const char *dot = memchr(p, '.', n);
		size_t l = dot ? (size_t)(dot - p) : n;

		if (l == 0 || f->depth == EMU_FILTER_MAX_DEPTH)
			return false;
		f->path[f->depth] = strndup(p, l);
		if (!f->path[f->depth])
			return false;
		f->depth++;
		if (!dot)
			return true;
		p = dot + 1;
		n -= l + 1;
		if (!n)
			return false; /* trailing dot */
	}
	return false;
}

static const char *parse_values(struct emu_mfilter *f, const char *v, char *err, size_t errsz)
{
	size_t i;

	for (;;) {
		const char *bar = f->op == FOP_IN ? strchr(v, '|') : NULL;
		size_t l = bar ? (size_t)(bar - v) : strlen(v);

		if (f->nvalues == EMU_FILTER_MAX_VALUES) {
			snprintf(err, errsz,
				 "Too many values for the in operator: maximum %d allowed",
				 EMU_FILTER_MAX_VALUES);
			return err;
		}
		f->values[f->nvalues] = strndup(v, l);
		if (!f->values[f->nvalues])
			return "Internal Server Error";
		f->nvalues++;
		if (!bar)
			break;
		v = bar + 1;
	}
	for (i = 0; i < f->nvalues; i++) {
		const char *s = f->values[i];

		if (f->type == FTYPE_NUMBER && !parse_number(s, &f->nums[i])) {
			snprintf(err, errsz, "Metadata filter value '%.64s' is not a number", s);
			return err;
		}
		if (f->type == FTYPE_BOOLEAN && strcmp(s, "true") && strcmp(s, "false")) {
			snprintf(err, errsz, "Metadata filter value '%.64s' is not a boolean", s);
			return err;
		}
	}
	return NULL;
}

/* Parses one "meta.<path>[<op>]" = value; an error message or NULL. */
static const char *parse_one(struct emu_mfilter *f, const char *name, const char *value, char *err,
			     size_t errsz)
{
	const char *path = name + 5, *lb = strrchr(path, '['), *rb;
	size_t i, oplen;

	rb = lb ? strchr(lb, ']') : NULL;
	if (!lb || !rb || rb[1] != '\0' || !split_path(f, path, (size_t)(lb - path))) {
		snprintf(
		    err, errsz,
		    "Invalid metadata filter '%.64s': use meta.<field>[<operator>] with at most "
		    "%d levels",
		    name, EMU_FILTER_MAX_DEPTH);
		return err;
	}
	oplen = (size_t)(rb - lb - 1);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strlen(ops[i].name) == oplen && !memcmp(ops[i].name, lb + 1, oplen))
			break;
	}
	if (i == sizeof(ops) / sizeof(ops[0])) {
		snprintf(err, errsz, "Unsupported metadata filter operator: '%.*s'",
			 (int)(oplen > 32 ? 32 : oplen), lb + 1);
		return err;
	}
	f->op = ops[i].op;
	f->type = ops[i].type;
	return parse_values(f, value, err, errsz);
}

bool emu_filters_parse(struct emu_req *rq, struct emu_filters *fs)
{
	char err[256];
	size_t i, total = 0;

	memset(fs, 0, sizeof(*fs));
	for (i = 0; i < rq->nquery; i++)
		total += !strncmp(rq->query[i].name, "meta.", 5);
	if (total > EMU_FILTER_MAX) {
		emu_reply_errorf(rq, 400, 5400,
				 "Too many metadata filters: %zu provided, maximum %d allowed",
				 total, EMU_FILTER_MAX);
		return false;
	}
	for (i = 0; i < rq->nquery; i++) {
		const char *why;

		if (strncmp(rq->query[i].name, "meta.", 5))
			continue;
		why = parse_one(&fs->f[fs->n++], rq->query[i].name, rq->query[i].value, err,
				sizeof(err));
		if (why) {
			emu_filters_release(fs);
			emu_reply_error(rq, 400, 5400, why);
			return false;
		}
	}
	return true;
}

static bool value_eq(const struct emu_mfilter *f, size_t i, struct json_object *x)
{
	const char *v = f->values[i];
	double d;

	switch (json_object_get_type(x)) {
	case json_type_string:
		return (f->type == FTYPE_ANY || f->type == FTYPE_STRING) &&
		       !strcmp(json_object_get_string(x), v);
	case json_type_int:
	case json_type_double:
		if (f->type == FTYPE_NUMBER)
			return json_object_get_double(x) == f->nums[i];
		return f->type == FTYPE_ANY && parse_number(v, &d) &&
		       json_object_get_double(x) == d;
	case json_type_boolean:
		return (f->type == FTYPE_ANY || f->type == FTYPE_BOOLEAN) &&
		       !strcmp(json_object_get_boolean(x) ? "true" : "false", v);
	default:
		return false;
	}
}

static bool match_one(const struct emu_mfilter *f, struct json_object *meta)
{
	struct json_object *x = meta;
	double d;
	size_t i;

	for (i = 0; i < f->depth; i++) {
		if (!json_object_is_type(x, json_type_object) ||
		    !json_object_object_get_ex(x, f->path[i], &x))
			return false;
	}
	if (f->op == FOP_EQ || f->op == FOP_IN) {
		for (i = 0; i < f->nvalues; i++) {
			if (value_eq(f, i, x))
				return true;
		}
		return false;
	}
	if (!json_object_is_type(x, json_type_int) && !json_object_is_type(x, json_type_double))
		return false;
	d = json_object_get_double(x);
	return f->op == FOP_GT	  ? d > f->nums[0]
	       : f->op == FOP_GTE ? d >= f->nums[0]
	       : f->op == FOP_LT  ? d < f->nums[0]
				  : d <= f->nums[0];
}

bool emu_filters_match(const struct emu_filters *fs, const char *meta)
{
	struct json_object *o;
	bool ok = true;
	size_t i;

	if (!fs || fs->n == 0)
		return true;
	if (!meta)
		return false;
	o = emu_json_parse(meta, strlen(meta));
	for (i = 0; ok && i < fs->n; i++)
		ok = o && match_one(&fs->f[i], o);
	json_object_put(o);
	return ok;
}

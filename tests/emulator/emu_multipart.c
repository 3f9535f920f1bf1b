/*
 * emu_multipart.c - multipart/form-data parsing (RFC 7578) over a fully buffered body.
 *
 * The body is already capped (EMU_UPLOAD_BODY_CAP) by the HTTP layer, so parsing works on one
 * contiguous buffer: parts are located with memmem() on "\r\n--<boundary>" (linear time) and
 * part data is borrowed from the body, never copied. Anything that does not follow the
 * grammar (missing opening or closing delimiter, part without headers end, without a
 * Content-Disposition form-data name, too many parts) is rejected with a reason.
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MP_MAX_PARTS 64
#define MP_MAX_HEADER_BYTES 8192
#define MP_MAX_BOUNDARY 70

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* Reads a token or quoted-string value starting at *pp; returns a new string or NULL. */
static char *read_value(const char **pp, const char *end)
{
	const char *p = *pp;
	char *out;
	size_t o = 0;

	out = malloc((size_t)(end - p) + 1);
	if (!out)
		return NULL;
	if (p < end && *p == '"') {
		p++;
		while (p < end && *p != '"') {
			if (*p == '\\' && p + 1 < end)
				p++;
			out[o++] = *p++;
		}
		if (p >= end) {
			free(out);
			return NULL;
		}
		p++;
	} else {
		while (p < end && *p != ';' && *p != ' ' && *p != '\t')
			out[o++] = *p++;
	}
	out[o] = '\0';
	*pp = p;
	return out;
}

int emu_multipart_boundary(const char *ctype, char *out, size_t outsz)
{
	const char *p, *end;

	if (!ctype)
		return -EINVAL;
	p = skip_ws(ctype, ctype + strlen(ctype));
	if (strncasecmp(p, "multipart/form-data", 19) != 0)
		return -EINVAL;
	p += 19;
	end = p + strlen(p);
	if (p < end && *p != ';' && *p != ' ' && *p != '\t')
		return -EINVAL;
	while (p < end) {
		char *v;
		bool is_boundary;

		p = skip_ws(p, end);
		if (p < end && *p == ';') {
			p++;
			continue;
		}
		is_boundary = (size_t)(end - p) > 9 && strncasecmp(p, "boundary=", 9) == 0;
		while (p < end && *p != '=' && *p != ';')
			p++;
		if (p >= end || *p == ';')
			continue;
		p++;
		v = read_value(&p, end);
		if (!v)
			return -EBADMSG;
		if (is_boundary) {
			size_t n = strlen(v);

			if (n == 0 || n > MP_MAX_BOUNDARY || n + 1 > outsz) {
				free(v);
				return -EBADMSG;
			}
			memcpy(out, v, n + 1);
			free(v);
			return 0;
		}
		free(v);
	}
	return -EBADMSG;
}

/* Parses the Content-Disposition value into name/filename. */
static int parse_disposition(const char *p, const char *end, struct emu_part *part)
{
	p = skip_ws(p, end);
	if ((size_t)(end - p) < 9 || strncasecmp(p, "form-data", 9) != 0)
		return -EBADMSG;
	p += 9;
	while (p < end) {
		const char *key;
		size_t klen;
		char *v;

		p = skip_ws(p, end);
		if (p < end && *p == ';') {
			p++;
			continue;
		}
		key = p;
		while (p < end && *p != '=' && *p != ';')
			p++;
		if (p >= end || *p != '=')
			return -EBADMSG;
		klen = (size_t)(p - key);
		while (klen && (key[klen - 1] == ' ' || key[klen - 1] == '\t'))
			klen--;
		p = skip_ws(p + 1, end);
		v = read_value(&p, end);
		if (!v)
			return -EBADMSG;
		if (klen == 4 && strncasecmp(key, "name", 4) == 0 && !part->name) {
			part->name = v;
		} else if (klen == 8 && strncasecmp(key, "filename", 8) == 0 && !part->filename) {
			part->filename = v;
		} else {
			free(v);
		}
	}
	return part->name ? 0 : -EBADMSG;
}

/* Parses the header block [p, end) of one part. */
static int parse_part_headers(const char *p, const char *end, struct emu_part *part)
{
	bool have_cd = false;

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		const char *colon;

		if (!eol)
			eol = end;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon)
			return -EBADMSG;
		if (colon - p == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
			if (have_cd || parse_disposition(colon + 1, eol, part))
				return -EBADMSG;
			have_cd = true;
		}
		p = eol + 2;
	}
	return have_cd ? 0 : -EBADMSG;
}

static int add_part(struct emu_form *form, struct emu_part *part)
{
	struct emu_part *np;

	if (form->n >= MP_MAX_PARTS)
		return -E2BIG;
	np = realloc(form->parts, (form->n + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	form->parts = np;
	form->parts[form->n++] = *part;
	return 0;
}

/* After a delimiter: "--" ends the body, otherwise optional padding + CRLF. */
static int after_delimiter(const char **pp, const char *end, bool *final)
{
	const char *p = *pp;

	if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
		*final = true;
		*pp = p + 2;
		return 0;
	}
	p = skip_ws(p, end);
	if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
		return -EBADMSG;
	*final = false;
	*pp = p + 2;
	return 0;
}

int emu_multipart_parse(const char *body, size_t len, const char *boundary, struct emu_form *form,
			const char **why)
{
	char delim[MP_MAX_BOUNDARY + 8];
	size_t dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	const char *end = body + len, *p;
	bool final = false;
	int rc;

	memset(form, 0, sizeof(*form));
	/* the first delimiter may start the body (no preceding CRLF) or follow a preamble */
	if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
		p = body + dlen - 2;
	} else {
		p = memmem(body, len, delim, dlen);
		*why = "missing opening boundary";
		if (!p)
			return -EBADMSG;
		p += dlen;
	}
	*why = "malformed boundary line";
	if (after_delimiter(&p, end, &final))
		return -EBADMSG;
	while (!final) {
		struct emu_part part = {0};
		const char *hend, *next;
		size_t hsz = (size_t)(end - p);

		if (hsz > MP_MAX_HEADER_BYTES + 4)
			hsz = MP_MAX_HEADER_BYTES + 4;
		*why = "part headers not terminated";
		hend = p < end ? memmem(p, hsz, "\r\n\r\n", 4) : NULL;
		if (!hend)
			goto fail;
		*why = "part without a form-data Content-Disposition name";
		if (parse_part_headers(p, hend, &part)) {
			free(part.name);
			free(part.filename);
			goto fail;
		}
		p = hend + 4;
		*why = "missing closing boundary";
		next = memmem(p, (size_t)(end - p), delim, dlen);
		if (!next) {
			free(part.name);
			free(part.filename);
			goto fail;
		}
		part.data = p;
		part.len = (size_t)(next - p);
		rc = add_part(form, &part);
		*why = "too many parts";
		if (rc) {
			free(part.name);
			free(part.filename);
			goto fail;
		}
		p = next + dlen;
		*why = "malformed boundary line";
		if (after_delimiter(&p, end, &final))
			goto fail;
	}
	return 0;
fail:
	emu_form_release(form);
	return -EBADMSG;
}

void emu_form_release(struct emu_form *form)
{
	size_t i;

	for (i = 0; i < form->n; i++) {
		free(form->parts[i].name);
		free(form->parts[i].filename);
	}
	free(form->parts);
	memset(form, 0, sizeof(*form));
}

/*
 * api_util.c - small pure helpers of the API client: capped buffers, percent-encoding,
 * RFC 3339 timestamps, header redaction for traces, content sniffing, clocks.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- buffers ------------------------------------------------------------------- */

static int buf_reserve(struct api_buf *b, size_t n)
{
	if (b->max && (b->len > b->max || n > b->max - b->len))
		return -EFBIG;
	if (n > SIZE_MAX - b->len - 1)
		return -ENOMEM;
	size_t need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int api_buf_add(struct api_buf *b, const void *p, size_t n)
{
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int api_buf_adds(struct api_buf *b, const char *s)
{
	return api_buf_add(b, s, strlen(s));
}

int api_buf_printf(struct api_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

static int unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

int api_buf_add_escaped(struct api_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += unreserved(*p) ? 1 : 3;
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p)) {
			b->data[b->len++] = (char)*p;
		} else {
			b->data[b->len++] = '%';
			b->data[b->len++] = hex[*p >> 4];
			b->data[b->len++] = hex[*p & 15];
		}
	}
	b->data[b->len] = '\0';
	return 0;
}

void api_buf_reset(struct api_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void api_buf_release(struct api_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *api_buf_steal(struct api_buf *b)
{
	char *p = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

char *api_escape(const char *s)
{
	struct api_buf b = {0};
	if (api_buf_add_escaped(&b, s) || api_buf_add(&b, "", 0)) {
		api_buf_release(&b);
		return NULL;
	}
	return api_buf_steal(&b);
}

void api_strlcpy(char *dst, const char *src, size_t dstlen)
{
	if (!dstlen)
		return;
	size_t n = strnlen(src, dstlen - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- RFC 3339 ------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int digits(const char **s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char ch = (*s)[i];
		if (ch < '0' || ch > '9')
			return -EINVAL;
		v = v * 10 + (ch - '0');
	}
	*s += n;
	*out = v;
	return 0;
}

static int expect(const char **s, const char *set)
{
	if (!**s || !strchr(set, **s))
		return -EINVAL;
	(*s)++;
	return 0;
}

static int is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int parse_offset(const char **s, int64_t *off_ms)
{
	if (**s == 'Z' || **s == 'z') {
		(*s)++;
		*off_ms = 0;
		return 0;
	}
	int sign = **s == '+' ? 1 : **s == '-' ? -1 : 0;
	int oh, om;
	if (!sign)
		return -EINVAL;
	(*s)++;
	if (digits(s, 2, &oh) || expect(s, ":") || digits(s, 2, &om) || oh > 23 || om > 59)
		return -EINVAL;
	*off_ms = sign * ((int64_t)oh * 3600 + om * 60) * 1000;
	return 0;
}

int api_parse_rfc3339(const char *s, int64_t *ms_out)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, se, ms = 0;
	int64_t off_ms;

	if (!s || digits(&s, 4, &y) || expect(&s, "-") || digits(&s, 2, &mo) || expect(&s, "-") ||
	    digits(&s, 2, &d) || expect(&s, "Tt ") || digits(&s, 2, &h) || expect(&s, ":") ||
	    digits(&s, 2, &mi) || expect(&s, ":") || digits(&s, 2, &se))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 60)
		return -EINVAL;
	if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
		return -EINVAL;
	if (*s == '.') {
		s++;
		int nd = 0;
		for (; *s >= '0' && *s <= '9'; s++, nd++) {
			if (nd < 3)
				ms = ms * 10 + (*s - '0');
		}
		if (nd == 0)
			return -EINVAL;
		for (; nd < 3; nd++)
			ms *= 10;
	}
	if (parse_offset(&s, &off_ms) || *s)
		return -EINVAL;
	if (se == 60)
		se = 59; /* leap second: clamp, good enough for mtimes */
	int64_t secs = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + se;
	*ms_out = secs * 1000 + ms - off_ms;
	return 0;
}

/* ---- header redaction ------------------------------------------------------------ */

static int is_secret_header(const char *line, size_t len)
{
	static const char *const names[] = {
	    "authorization:", "x-auth-key:", "proxy-authorization:"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);
		if (len >= n && strncasecmp(line, names[i], n) == 0)
			return (int)n;
	}
	return 0;
}

size_t api_redact_headers(const char *in, size_t len, char *out, size_t outlen)
{
	struct api_buf b = {.max = outlen ? outlen - 1 : 0};
	size_t i = 0;

	if (!outlen)
		return 0;
	while (i < len) {
		const char *line = in + i;
		const char *nl = memchr(line, '\n', len - i);
		size_t ll = nl ? (size_t)(nl - line) + 1 : len - i;
		int name = is_secret_header(line, ll);
		int rc;
		if (name) {
			const char *end = line + ll;
			const char *eol = end;
			while (eol > line + name && (eol[-1] == '\n' || eol[-1] == '\r'))
				eol--;
			rc = api_buf_add(&b, line, (size_t)name);
			if (!rc)
				rc = api_buf_adds(&b, " [redacted]");
			if (!rc)
				rc = api_buf_add(&b, eol, (size_t)(end - eol));
		} else {
			rc = api_buf_add(&b, line, ll);
		}
		if (rc)
			break; /* out of room: the rest is dropped, never a secret cut in half */
		i += ll;
	}
	size_t n = b.len;
	if (b.data)
		memcpy(out, b.data, n);
	out[n] = '\0';
	api_buf_release(&b);
	return n;
}

/* ---- sniffing ------------------------------------------------------------------- */

static int has_prefix(const unsigned char *p, size_t n, const void *pre, size_t pn)
{
	return n >= pn && memcmp(p, pre, pn) == 0;
}

static int looks_like_svg(const unsigned char *p, size_t n)
{
	size_t i = 0;
	if (has_prefix(p, n, "\xEF\xBB\xBF", 3))
		i = 3;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	if (i >= n || p[i] != '<')
		return 0;
	/* "<svg" must appear within the sniffed window (after an XML prolog or comments). */
	for (size_t j = i; j + 4 <= n; j++) {
		if (memcmp(p + j, "<svg", 4) == 0)
			return 1;
	}
	return 0;
}

const char *api_sniff_content_type(const unsigned char *p, size_t n)
{
	if (has_prefix(p, n, "\x89PNG\r\n\x1a\n", 8))
		return "image/png";
	if (has_prefix(p, n, "\xFF\xD8\xFF", 3))
		return "image/jpeg";
	if (has_prefix(p, n, "GIF87a", 6) || has_prefix(p, n, "GIF89a", 6))
		return "image/gif";
	if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
		return "image/webp";
	if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
		if (memcmp(p + 8, "avif", 4) == 0 || memcmp(p + 8, "avis", 4) == 0)
			return "image/avif";
		if (memcmp(p + 8, "heic", 4) == 0 || memcmp(p + 8, "heix", 4) == 0 ||
		    memcmp(p + 8, "mif1", 4) == 0)
			return "image/heic";
	}
	if (looks_like_svg(p, n))
		return "image/svg+xml";
	return "application/octet-stream";
}

int api_is_uuid(const char *s)
{
	static const int dash[] = {8, 13, 18, 23};
	size_t n = strlen(s);
	if (n != 36)
		return 0;
	for (size_t i = 0, k = 0; i < n; i++) {
		if (k < 4 && (int)i == dash[k]) {
			if (s[i] != '-')
				return 0;
			k++;
			continue;
		}
		char ch = s[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
		      (ch >= 'A' && ch <= 'F')))
			return 0;
	}
	return 1;
}

/* ---- clocks --------------------------------------------------------------------- */

int64_t api_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void api_sleep_ms(long ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

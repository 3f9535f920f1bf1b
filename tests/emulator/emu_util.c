/*
 * emu_util.c - byte buffers, JSON string escaping, percent decoding, UTF-8 checks, time,
 * randomness and atomic file writes shared by the emulator modules.
 */
#include "emu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void emu_buf_init(struct emu_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void emu_buf_release(struct emu_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static bool buf_reserve(struct emu_buf *b, size_t extra)
{
	size_t need, ncap;
	char *p;

	if (b->err)
		return false;
	if (extra > SIZE_MAX / 2 - b->len || (b->max && b->len + extra > b->max)) {
		b->err = -EFBIG;
		return false;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	p = realloc(b->data, ncap);
	if (!p) {
		b->err = -ENOMEM;
		return false;
	}
	b->data = p;
	b->cap = ncap;
	return true;
}

void emu_buf_add(struct emu_buf *b, const void *p, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void emu_buf_puts(struct emu_buf *b, const char *s)
{
	emu_buf_add(b, s, strlen(s));
}

void emu_buf_printf(struct emu_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void emu_buf_json_str(struct emu_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;
	char esc[7];

	emu_buf_add(b, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue;
		emu_buf_add(b, s + run, i - run);
		run = i + 1;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			emu_buf_add(b, esc, 2);
			continue;
		}
		memcpy(esc, "\\u00", 4);
		esc[4] = hex[c >> 4];
		esc[5] = hex[c & 15];
		emu_buf_add(b, esc, 6);
	}
	emu_buf_add(b, s + run, n - run);
	emu_buf_add(b, "\"", 1);
}

char *emu_buf_steal(struct emu_buf *b, size_t *len)
{
	char *d = b->data;

	if (!d) {
		d = calloc(1, 1);
		b->len = 0;
	}
	if (len)
		*len = b->len;
	memset(b, 0, sizeof(*b));
	return d;
}

int64_t emu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void emu_format_time(int64_t ms, char out[64])
{
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *emu_pct_decode(const char *src, size_t n, bool plus_is_space, size_t *outlen)
{
	char *out = malloc(n + 1);
	size_t i, o = 0;

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		char c = src[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				goto bad;
			hi = hexval(src[i + 1]);
			lo = hexval(src[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (c == '\0')
			goto bad;
		out[o++] = c;
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return out;
bad:
	free(out);
	return NULL;
}

bool emu_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t k, need;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= need)
			return false;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

bool emu_has_ctl(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/* Reads exactly n decimal digits at s; -1 when any is not a digit. */
static long digits(const char *s, size_t n)
{
	long v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool leap(long y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Fractional seconds (".d+", at most 9 digits kept as ms) at *p; false when malformed. */
static bool parse_frac(const char *s, size_t n, size_t *p, long *ms)
{
	size_t start, i;

	*ms = 0;
	if (*p >= n || s[*p] != '.')
		return true;
	start = ++*p;
	while (*p < n && s[*p] >= '0' && s[*p] <= '9')
		++*p;
	if (*p == start || *p - start > 9)
		return false;
	for (i = 0; i < 3; i++)
		*ms = *ms * 10 + (start + i < *p ? s[start + i] - '0' : 0);
	return true;
}

int emu_parse_rfc3339(const char *s, size_t n, int64_t *ms)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	long y, mo, d, h, mi, sec, frac, off = 0, oh, om;
	struct tm tm = {0};
	size_t p = 19;
	time_t t;

	if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	y = digits(s, 4);
	mo = digits(s + 5, 2);
	d = digits(s + 8, 2);
	h = digits(s + 11, 2);
	mi = digits(s + 14, 2);
	sec = digits(s + 17, 2);
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    sec < 0 || sec > 60 || d > mdays[mo - 1] + (mo == 2 && leap(y)))
		return -EINVAL;
	if (!parse_frac(s, n, &p, &frac) || p >= n)
		return -EINVAL;
	if ((s[p] == 'Z' || s[p] == 'z') && p + 1 == n) {
		off = 0;
	} else if ((s[p] == '+' || s[p] == '-') && p + 6 == n && s[p + 3] == ':') {
		oh = digits(s + p + 1, 2);
		om = digits(s + p + 4, 2);
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -EINVAL;
		off = (oh * 60 + om) * 60 * (s[p] == '-' ? -1 : 1);
	} else {
		return -EINVAL;
	}
	tm.tm_year = (int)(y - 1900);
	tm.tm_mon = (int)(mo - 1);
	tm.tm_mday = (int)d;
	tm.tm_hour = (int)h;
	tm.tm_min = (int)mi;
	tm.tm_sec = (int)(sec == 60 ? 59 : sec); /* a leap second counts as :59 */
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*ms = ((int64_t)t - off) * 1000 + frac;
	return 0;
}

bool emu_alnum_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

bool emu_is_uuid(const char *s, size_t n)
{
	size_t i;

	if (n != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (hexval(s[i]) < 0) {
			return false;
		}
	}
	return true;
}

void emu_random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* getrandom cannot really fail on Linux >= 3.17; fall back to a weak mix */
			for (size_t i = 0; i < n; i++)
				p[i] = (unsigned char)(rand() >> 7);
			return;
		}
		p += r;
		n -= (size_t)r;
	}
}

void emu_uuid4(char out[37])
{
	unsigned char b[16];
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	emu_random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

void emu_base64url(const unsigned char *in, size_t n, char *out)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = tbl[v >> 6 & 63];
		out[o++] = tbl[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = tbl[v >> 6 & 63];
	}
	out[o] = '\0';
}

int emu_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s || *s == ' ' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

const char *emu_json_compact(struct json_object *o, size_t *len)
{
	return json_object_to_json_string_length(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

struct json_object *emu_json_parse(const char *s, size_t n)
{
	struct json_tokener *tok;
	struct json_object *o;
	size_t i;

	if (!s || n == 0 || n > INT32_MAX)
		return NULL;
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (o && json_tokener_get_error(tok) == json_tokener_success) {
		for (i = json_tokener_get_parse_end(tok); i < n; i++) {
			if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t') {
				json_object_put(o);
				o = NULL;
				break;
			}
		}
	} else if (o) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int emu_write_atomic(int dirfd, const char *name, const void *a, size_t alen, const void *b,
		     size_t blen, bool do_sync)
{
	char tmp[300];
	unsigned char rnd[6];
	char rs[12];
	int fd, rc;

	emu_random_bytes(rnd, sizeof(rnd));
	emu_base64url(rnd, sizeof(rnd), rs);
	if (snprintf(tmp, sizeof(tmp), ".tmp-%s-%s", rs, name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write_all(fd, a, alen);
	if (!rc && blen)
		rc = write_all(fd, b, blen);
	if (!rc && do_sync && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name) < 0)
		rc = -errno;
	if (rc) {
		unlinkat(dirfd, tmp, 0);
		return rc;
	}
	if (do_sync)
		fsync(dirfd);
	return 0;
}

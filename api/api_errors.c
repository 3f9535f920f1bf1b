/*
 * api_errors.c - the one table from API failures to errno, error formatting, and the
 * custom-id rules.
 *
 * api_errno_map() looks at the transfer first, then the Cloudflare error code (the most
 * specific signal; e.g. 9106 and 7003 arrive with HTTP 400 but mean "no access" and "no
 * such object"), then the HTTP status:
 *
 *   curl CURLE_OPERATION_TIMEDOUT (overall or low-speed timeout) ....... ETIMEDOUT
 *   any other curl failure (refused, reset, DNS, TLS, ...) ............. EIO
 *       Transport failures stay EIO even after the retries ran out: to a filesystem
 *       user "the server cannot be reached" is an I/O error; EAGAIN on read()/stat()
 *       makes programs spin.
 *   code 9106, 6003, 10000, 5403; HTTP 401, 403 ......................... EACCES
 *   code 5404, 5401, 7003, 7000; HTTP 404 .............................. ENOENT
 *   code 5409; HTTP 409 ................................................ EEXIST
 *   code 5413; HTTP 413 ................................................ EFBIG
 *   code 5400, 5455, 5415; HTTP 400, 415 ................................ EINVAL
 *   code 971, 10429; HTTP 429, 502, 503, 504 (only reached once retries  EAGAIN
 *       are spent: they are retried first)
 *   code 5453 (account service limit) .................................. ENOSPC
 *   code 5408 (upload too slow) ........................................ ETIMEDOUT
 *   anything else (HTTP 500, 5500, malformed responses) ................ EIO
 */
#include "api_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int map_cf_code(int cf)
{
	switch (cf) {
	case 9106:
	case 6003:
	case 10000:
	case 5403:
		return EACCES;
	case 5404:
	case 5401:
	case 7003:
	case 7000:
		return ENOENT;
	case 5409:
		return EEXIST;
	case 5413:
		return EFBIG;
	case 5400:
	case 5455:
	case 5415:
		return EINVAL;
	case 971:
	case 10429:
		return EAGAIN;
	case 5453:
		return ENOSPC;
	case 5408:
		return ETIMEDOUT;
	default:
		return 0;
	}
}

static int map_http(long status)
{
	switch (status) {
	case 401:
	case 403:
		return EACCES;
	case 404:
		return ENOENT;
	case 409:
		return EEXIST;
	case 413:
		return EFBIG;
	case 400:
	case 415:
		return EINVAL;
	case 429:
	case 502:
	case 503:
	case 504:
		return EAGAIN;
	default:
		return 0;
	}
}

int api_errno_map(long http_status, int cf_code, int curl_code)
{
	if (curl_code != 0)
		return curl_code == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : EIO;
	int e = map_cf_code(cf_code);
	if (!e)
		e = map_http(http_status);
	return e ? e : EIO;
}

const char *api_err_str(const struct api_err *err, char *buf, size_t len)
{
	size_t n = 0;
	int w;

	if (!len)
		return buf;
	buf[0] = '\0';
	if (!err)
		return buf;
#define APPEND(...)                                                                                \
	do {                                                                                       \
		if (n < len) {                                                                     \
			w = snprintf(buf + n, len - n, __VA_ARGS__);                               \
			n += w > 0 ? (size_t)w : 0;                                                \
		}                                                                                  \
	} while (0)
	if (err->http_status)
		APPEND("HTTP %ld", err->http_status);
	if (err->cf_code)
		APPEND("%scode %d", n ? ", " : "", err->cf_code);
	if (err->curl_code)
		APPEND("%scurl error %d", n ? ", " : "", err->curl_code);
	if (err->message[0])
		APPEND("%s%s", n ? ": " : "", err->message);
	if (err->attempts > 1)
		APPEND(" (after %d attempts)", err->attempts);
#undef APPEND
	return buf;
}

int api_fail(struct api_err *err, int e, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		memset(err, 0, sizeof(*err));
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -e;
}

/* Length of the well-formed UTF-8 sequence at p (1-4), 0 if malformed. Rejects overlong
 * forms, surrogates and code points above U+10FFFF. */
static int utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		return (p[1] & 0xC0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		unsigned lo = p[0] == 0xE0 ? 0xA0 : 0x80, hi = p[0] == 0xED ? 0x9F : 0xBF;
		if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
			return 0;
		return 3;
	}
	if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		unsigned lo = p[0] == 0xF0 ? 0x90 : 0x80, hi = p[0] == 0xF4 ? 0x8F : 0xBF;
		if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/* Ids that name an API route under /images/v1/ ("GET v1/keys" lists the signing keys),
 * so an image with that id could be uploaded but never read back or deleted. */
static int is_route_name(const char *id)
{
	static const char *const routes[] = {"keys", "stats", "variants", "batch_token",
					     "direct_upload", "config"};

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(id, routes[i]) == 0)
			return 1;
	return 0;
}

int api_custom_id_valid(const char *id)
{
	if (!id)
		return -EINVAL;
	if (is_route_name(id))
		return -EINVAL;
	size_t n = strnlen(id, API_MAX_ID_LEN + 1);
	if (n == 0 || n > API_MAX_ID_LEN)
		return -EINVAL;
	if (id[0] == '/' || id[n - 1] == '/')
		return -EINVAL;
	if (api_is_uuid(id))
		return -EINVAL;
	for (const unsigned char *p = (const unsigned char *)id; *p;) {
		if (*p < 0x20 || *p == 0x7F)
			return -EINVAL;
		int l = utf8_len(p); /* stops at the NUL: continuation checks fail on it */
		if (!l)
			return -EINVAL;
		p += l;
	}
	return 0;
}

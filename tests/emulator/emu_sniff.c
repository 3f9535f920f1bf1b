/*
 * emu_sniff.c - image type detection from magic bytes (JPEG, PNG, GIF, WebP, SVG).
 * The Content-Type a client sends is ignored; only the bytes decide, like the blob's
 * Content-Type on download.
 */
#include "emu.h"

#include <string.h>
#include <strings.h>

#define SVG_SCAN_LIMIT 4096

static size_t skip_space(const unsigned char *p, size_t i, size_t n)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	return i;
}

static bool has_at(const unsigned char *p, size_t i, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n - i >= l && strncasecmp((const char *)p + i, lit, l) == 0;
}

/* Index just past the first occurrence of lit at or after i, or n when absent. */
static size_t skip_past(const unsigned char *p, size_t i, size_t n, const char *lit)
{
	const unsigned char *f = memmem(p + i, n - i, lit, strlen(lit));

	return f ? (size_t)(f - p) + strlen(lit) : n;
}

static bool is_svg(const unsigned char *p, size_t n)
{
	size_t i = 0;

	if (n > SVG_SCAN_LIMIT)
		n = SVG_SCAN_LIMIT;
	if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
		i = 3;
	for (;;) {
		i = skip_space(p, i, n);
		if (i >= n)
			return false;
		if (has_at(p, i, n, "<?xml"))
			i = skip_past(p, i, n, "?>");
		else if (has_at(p, i, n, "<!--"))
			i = skip_past(p, i + 4, n, "-->");
		else if (has_at(p, i, n, "<!DOCTYPE"))
			i = skip_past(p, i, n, ">");
		else
			break;
	}
	if (!has_at(p, i, n, "<svg") || n - i < 5)
		return false;
	i += 4;
	return p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n' || p[i] == '>' ||
	       p[i] == '/';
}

const char *emu_sniff(const unsigned char *p, size_t n)
{
	static const unsigned char png[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return "image/jpeg";
	if (n >= 8 && memcmp(p, png, 8) == 0)
		return "image/png";
	if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
		return "image/gif";
	if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
		return "image/webp";
	if (is_svg(p, n))
		return "image/svg+xml";
	return NULL;
}

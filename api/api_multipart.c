/*
 * api_multipart.c - multipart/form-data (RFC 7578) encoder for uploads.
 *
 * The body is three pieces laid end to end: `head` (every text part, then the headers of
 * the file part), the file bytes read with pread() straight from the caller's fd, and
 * `tail` (the closing delimiter). Only head and tail live in memory, so a 10 MB upload
 * costs a few hundred bytes of heap, and since the size is known the request carries a
 * Content-Length (no chunked encoding) and can be replayed from offset 0 on a retry.
 *
 * Names and filenames are quoted; '"', CR and LF inside them are percent-encoded the way
 * browsers do (WHATWG), so a filename can never break the part headers. Text values may
 * hold anything but the boundary, which is checked; the file bytes are not scanned: the
 * boundary carries 128 random bits.
 */
#include "api_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define MP_BOUNDARY_PREFIX "----imagesfs"

static int random_hex(char *out, size_t nhex)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[32];
	size_t nraw = (nhex + 1) / 2;
	if (nraw > sizeof(raw))
		return -EINVAL;
	if (getrandom(raw, nraw, 0) != (ssize_t)nraw) {
		/* No entropy source: fall back to the jitter PRNG (uniqueness is all we need). */
		for (size_t i = 0; i < nraw; i++)
			raw[i] = (unsigned char)api_retry_rand();
	}
	for (size_t i = 0; i < nhex; i++)
		out[i] = hex[(raw[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
	out[nhex] = '\0';
	return 0;
}

int api_mp_init(struct api_mp *mp, const char *boundary)
{
	memset(mp, 0, sizeof(*mp));
	mp->fd = -1;
	mp->head.max = 64 * 1024; /* text fields are each capped by the API at ~1 KB */
	mp->tail.max = 256;
	if (boundary) {
		size_t n = strlen(boundary);
		/* RFC 2046: 1-70 characters; we need no quoting, so no spaces. */
		if (n == 0 || n > 70 || strpbrk(boundary, " \"\r\n"))
			return -EINVAL;
		memcpy(mp->boundary, boundary, n + 1);
		return 0;
	}
	memcpy(mp->boundary, MP_BOUNDARY_PREFIX, sizeof(MP_BOUNDARY_PREFIX));
	return random_hex(mp->boundary + strlen(MP_BOUNDARY_PREFIX), 32);
}

/* Appends a quoted-string with '"', CR and LF percent-encoded. */
static int add_quoted(struct api_buf *b, const char *s)
{
	int rc = api_buf_adds(b, "\"");
	for (; *s && !rc; s++) {
		if (*s == '"')
			rc = api_buf_adds(b, "%22");
		else if (*s == '\r')
			rc = api_buf_adds(b, "%0D");
		else if (*s == '\n')
			rc = api_buf_adds(b, "%0A");
		else
			rc = api_buf_add(b, s, 1);
	}
	return rc ? rc : api_buf_adds(b, "\"");
}

static int add_part_header(struct api_mp *mp, const char *name)
{
	int rc = api_buf_printf(&mp->head,
				"--%s\r\nContent-Disposition: form-data; name=", mp->boundary);
	return rc ? rc : add_quoted(&mp->head, name);
}

int api_mp_add_text(struct api_mp *mp, const char *name, const char *value)
{
	if (mp->finished || mp->fd >= 0)
		return -EINVAL; /* the file part must come last */
	if (strstr(value, mp->boundary))
		return -EINVAL;
	int rc = add_part_header(mp, name);
	if (!rc)
		rc = api_buf_adds(&mp->head, "\r\n\r\n");
	if (!rc)
		rc = api_buf_adds(&mp->head, value);
	if (!rc)
		rc = api_buf_adds(&mp->head, "\r\n");
	return rc == -EFBIG ? -EINVAL : rc;
}

int api_mp_add_file(struct api_mp *mp, const char *name, const char *filename,
		    const char *content_type, int fd, uint64_t size)
{
	if (mp->finished || mp->fd >= 0 || fd < 0)
		return -EINVAL;
	int rc = add_part_header(mp, name);
	if (!rc)
		rc = api_buf_adds(&mp->head, "; filename=");
	if (!rc)
		rc = add_quoted(&mp->head, filename);
	if (!rc)
		rc = api_buf_printf(&mp->head, "\r\nContent-Type: %s\r\n\r\n", content_type);
	if (rc)
		return rc == -EFBIG ? -EINVAL : rc;
	mp->fd = fd;
	mp->file_size = size;
	return 0;
}

int api_mp_finish(struct api_mp *mp)
{
	int rc = api_buf_printf(&mp->tail, "%s--%s--\r\n", mp->fd >= 0 ? "\r\n" : "", mp->boundary);
	if (rc)
		return rc;
	if (!mp->head.data && (rc = api_buf_add(&mp->head, "", 0)))
		return rc;
	mp->total = (uint64_t)mp->head.len + mp->file_size + mp->tail.len;
	mp->finished = 1;
	return 0;
}

static ssize_t read_file_at(struct api_mp *mp, uint64_t off, char *buf, size_t len)
{
	if (len > mp->file_size - off)
		len = (size_t)(mp->file_size - off);
	ssize_t n;
	do {
		n = pread(mp->fd, buf, len, (off_t)off);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0 && len > 0)
		return -EIO; /* the file shrank while we were sending it */
	return n;
}

ssize_t api_mp_read_at(struct api_mp *mp, uint64_t off, char *buf, size_t len)
{
	uint64_t hl = mp->head.len, fend = hl + mp->file_size;
	if (!mp->finished)
		return -EINVAL;
	if (off >= mp->total || len == 0)
		return 0;
	if (off < hl) {
		size_t n = (size_t)(hl - off) < len ? (size_t)(hl - off) : len;
		memcpy(buf, mp->head.data + off, n);
		return (ssize_t)n;
	}
	if (off < fend)
		return read_file_at(mp, off - hl, buf, len);
	size_t toff = (size_t)(off - fend);
	size_t n = mp->tail.len - toff < len ? mp->tail.len - toff : len;
	memcpy(buf, mp->tail.data + toff, n);
	return (ssize_t)n;
}

void api_mp_content_type(const struct api_mp *mp, char *buf, size_t len)
{
	snprintf(buf, len, "multipart/form-data; boundary=%s", mp->boundary);
}

void api_mp_release(struct api_mp *mp)
{
	api_buf_release(&mp->head);
	api_buf_release(&mp->tail);
	mp->finished = 0;
}

/*
 * emu_fetch.c - upload-by-url: fetches the `url` form field with libcurl.
 * One easy handle per fetch (never shared between threads), http/https only, bounded by
 * connect/total timeouts and a byte cap enforced while receiving.
 */
#include "emu.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>

#define FETCH_CONNECT_TIMEOUT_S 5L
#define FETCH_TOTAL_TIMEOUT_S 30L
#define FETCH_MAX_REDIRECTS 5L

struct fetch_ctx {
	struct emu_buf *out;
	size_t cap;
	bool too_big;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *cls)
{
	struct fetch_ctx *c = cls;
	size_t n = size * nmemb;

	if (c->out->len + n > c->cap) {
		c->too_big = true;
		return 0; /* aborts the transfer */
	}
	emu_buf_add(c->out, p, n);
	return c->out->err ? 0 : n;
}

int emu_fetch_url(const char *url, size_t cap, struct emu_buf *out, char *err, size_t errsz)
{
	struct fetch_ctx c = {.out = out, .cap = cap};
	char ebuf[CURL_ERROR_SIZE] = "";
	CURL *h = curl_easy_init();
	CURLcode cc;
	long status = 0;

	if (!h) {
		snprintf(err, errsz, "cannot create a fetch handle");
		return -ENOMEM;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, FETCH_MAX_REDIRECTS);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, FETCH_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, FETCH_TOTAL_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "imagesfs-emulator");
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	if (c.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(err, errsz, "image at URL is larger than %zu bytes", cap);
		return -EFBIG;
	}
	if (cc != CURLE_OK) {
		snprintf(err, errsz, "%s", ebuf[0] ? ebuf : curl_easy_strerror(cc));
		return -EIO;
	}
	if (status < 200 || status > 299) {
		snprintf(err, errsz, "origin answered HTTP %ld", status);
		return -EIO;
	}
	if (out->err) {
		snprintf(err, errsz, "out of memory");
		return out->err;
	}
	return 0;
}

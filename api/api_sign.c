/*
 * api_sign.c - signed delivery URLs (reference §5, §9.2): the token Cloudflare checks on a
 * private image's delivery URL.
 *
 * stringToSign = url.pathname + "?exp=<unix seconds>" (no scheme, no host), the MAC is
 * HMAC-SHA256 keyed with the signing key's string exactly as GET /keys shows it (not
 * base64-decoded), and the token is "exp=<exp>&sig=<64 lowercase hex>". Pure functions: no
 * network, no state, safe from any thread. HMAC comes from libcrypto.
 */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

int api_sign_hex(const char *key, const char *msg, char hex[API_SIG_HEX_LEN + 1])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t klen = strlen(key);

	if (klen > API_MAX_KEY_VALUE_LEN || klen > INT32_MAX)
		return -EINVAL;
	if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), mac,
		  &maclen) ||
	    maclen * 2 != API_SIG_HEX_LEN)
		return -EIO;
	for (unsigned int i = 0; i < maclen; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	hex[API_SIG_HEX_LEN] = '\0';
	return 0;
}

/* Start of the path of an absolute URL ("https://h:1/p" -> "/p"); NULL when it has none. */
static const char *url_path(const char *url)
{
	const char *p = strstr(url, "://");

	if (!p)
		return NULL;
	p = strchr(p + 3, '/');
	return p;
}

int api_sign_url(const char *url, const char *key, int64_t exp, char *out, size_t outsz)
{
	char hex[API_SIG_HEX_LEN + 1];
	char msg[API_MAX_SIGNED_URL];
	const char *path = url_path(url);
	int n, rc;

	if (!path || strchr(url, '?') || strchr(url, '#') || exp < 0)
		return -EINVAL;
	n = snprintf(msg, sizeof(msg), "%s?exp=%" PRId64, path, exp);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return -ENAMETOOLONG;
	rc = api_sign_hex(key, msg, hex);
	if (rc)
		return rc;
	n = snprintf(NULL, 0, "%s?exp=%" PRId64 "&sig=%s", url, exp, hex);
	if (n < 0 || (size_t)n >= outsz || (size_t)n >= API_MAX_SIGNED_URL)
		return -ENAMETOOLONG;
	snprintf(out, outsz, "%s?exp=%" PRId64 "&sig=%s", url, exp, hex);
	return 0;
}

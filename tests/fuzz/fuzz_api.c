/*
 * fuzz_api.c - libFuzzer targets for every parser of network input in api/.
 *
 * One source, one target per FUZZ_API_<name> definition (see fuzz.cmake). Each target feeds
 * the bytes to the same path a response takes (api_json_parse with the depth cap, then the
 * envelope, then the shape parser) and touches every field of the result, so a dangling or
 * unterminated string becomes an ASan report rather than passing silently.
 *
 *   list      result.images of a v1/v2 page (api_parse_list_page)
 *   image     one Image (api_parse_image)
 *   keys      result.keys (api_parse_keys)
 *   variants  result.variants as a map or array, and one variant (api_parse_variants/_variant)
 *   stats     result.count (api_parse_stats)
 *   envelope  error envelopes under any HTTP status (api_envelope, api_err_str, errno map)
 *   text      header redaction (debug trace of server headers), RFC 3339 dates, sniffing,
 *             custom-id rules
 */
#include "api_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void touch(const char *s)
{
	if (s)
		sink += strlen(s);
}

__attribute__((unused)) static void touch_image(const struct api_image *img)
{
	touch(img->id);
	touch(img->filename);
	touch(img->creator);
	touch(img->meta_json);
	for (size_t i = 0; i < img->n_variants; i++)
		touch(img->variants[i]);
	sink += (size_t)img->uploaded_ms + (size_t)img->require_signed_urls + (size_t)img->draft;
}

__attribute__((unused)) static int list_cb(const struct api_image *img, void *arg)
{
	(void)arg;
	touch_image(img);
	return 0;
}

/* Parses data as a response body; *result is the envelope's result (borrowed). */
__attribute__((unused)) static struct json_object *parse(const uint8_t *data, size_t size,
							 long status, struct json_object **result)
{
	struct json_object *root = NULL;
	struct api_err err;
	char msg[128];
	*result = NULL;
	if (api_json_parse((const char *)data, size, &root, msg, sizeof(msg)) != 0)
		return NULL;
	memset(&err, 0, sizeof(err));
	if (api_envelope(root, status, result, &err) != 0 || !*result)
		*result = NULL;
	touch(err.message);
	return root;
}

#if defined(FUZZ_API_LIST)
static void run(const uint8_t *data, size_t size)
{
	struct json_object *result, *root = parse(data, size, 200, &result);
	char token[API_MAX_TOKEN_LEN + 1], msg[128];
	size_t n = 0;
	if (result) {
		api_parse_list_page(result, list_cb, NULL, &n, token, sizeof(token), msg,
				    sizeof(msg));
		touch(token);
	}
	json_object_put(root);
}
#elif defined(FUZZ_API_IMAGE)
static void run(const uint8_t *data, size_t size)
{
	struct json_object *result, *root = parse(data, size, 200, &result);
	struct api_image img;
	char msg[128];
	if (result && api_parse_image(result, &img, msg, sizeof(msg)) == 0) {
		touch_image(&img);
		api_image_release(&img);
	}
	json_object_put(root);
}
#elif defined(FUZZ_API_KEYS)
static void run(const uint8_t *data, size_t size)
{
	struct json_object *result, *root = parse(data, size, 200, &result);
	struct api_key_list kl;
	char msg[128];
	if (result && api_parse_keys(result, &kl, msg, sizeof(msg)) == 0) {
		for (size_t i = 0; i < kl.n; i++) {
			touch(kl.keys[i].name);
			touch(kl.keys[i].value);
		}
		api_key_list_release(&kl);
	}
	json_object_put(root);
}
#elif defined(FUZZ_API_VARIANTS)
static void run(const uint8_t *data, size_t size)
{
	struct json_object *result, *root = parse(data, size, 200, &result);
	struct api_variant_list vl;
	struct api_variant v;
	char msg[128];
	if (result && api_parse_variants(result, &vl, msg, sizeof(msg)) == 0) {
		for (size_t i = 0; i < vl.n; i++) {
			touch(vl.v[i].id);
			touch(vl.v[i].options_json);
		}
		api_variant_list_release(&vl);
	}
	if (result && api_parse_variant(result, "fallback", &v, msg, sizeof(msg)) == 0) {
		touch(v.id);
		touch(v.options_json);
		api_variant_release(&v);
	}
	json_object_put(root);
}
#elif defined(FUZZ_API_STATS)
static void run(const uint8_t *data, size_t size)
{
	struct json_object *result, *root = parse(data, size, 200, &result);
	struct api_stats st;
	char msg[128];
	if (result && api_parse_stats(result, &st, msg, sizeof(msg)) == 0)
		sink += (size_t)st.allowed + (size_t)st.current;
	json_object_put(root);
}
#elif defined(FUZZ_API_ENVELOPE)
static void run(const uint8_t *data, size_t size)
{
	struct json_object *root = NULL, *result = NULL;
	struct api_err err;
	char msg[128], line[384];
	long status;
	if (size < 2)
		return;
	status = 100 + (long)((data[0] | (data[1] << 8)) % 500); /* 100..599 */
	if (api_json_parse((const char *)data + 2, size - 2, &root, msg, sizeof(msg)) != 0)
		return;
	memset(&err, 0, sizeof(err));
	int rc = api_envelope(root, status, &result, &err);
	if (rc) {
		sink += (size_t)api_errno_map(err.http_status, err.cf_code, err.curl_code);
		touch(api_err_str(&err, line, sizeof(line)));
		touch(api_err_str(&err, line, 8));
	}
	json_object_put(root);
}
#elif defined(FUZZ_API_TEXT)
static void run(const uint8_t *data, size_t size)
{
	char out[4096], small[16];
	int64_t ms;
	char *s = malloc(size + 1);
	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	api_redact_headers((const char *)data, size, out, sizeof(out));
	touch(out);
	api_redact_headers((const char *)data, size, small, sizeof(small));
	touch(small);
	if (api_parse_rfc3339(s, &ms) == 0)
		sink += (size_t)ms;
	touch(api_sniff_content_type(data, size));
	sink += (size_t)api_custom_id_valid(s) + (size_t)api_is_uuid(s);
	char *e = api_escape(s);
	touch(e);
	free(e);
	free(s);
}
#else
#error "define one FUZZ_API_<target>"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	return 0;
}

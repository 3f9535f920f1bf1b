/*
 * fuzz_emu_fields.c - libFuzzer target for the emulator's request field decoders
 * (tests/emulator/emu_util.c, linked directly): percent-decoding of path segments and
 * query parameters, then the checks every id/name goes through (UTF-8, control characters,
 * UUID shape), RFC 3339 and integer parameters, and JSON request bodies (PATCH, variants,
 * admin rules) through emu_json_parse and back out through emu_json_compact.
 */
#include "emu.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void decoded(const char *s, size_t n)
{
	sink +=
	    (size_t)emu_utf8_valid(s, n) + (size_t)emu_has_ctl(s, n) + (size_t)emu_is_uuid(s, n);
	if (n)
		sink += (unsigned char)s[n - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t n = 0;
	int64_t ms;
	long v;
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	for (int plus = 0; plus < 2; plus++) {
		char *d = emu_pct_decode(in, size, plus, &n);
		if (d) {
			decoded(d, n);
			free(d);
		}
	}
	decoded(in, size);
	if (emu_parse_rfc3339(in, size, &ms) == 0)
		sink += (size_t)ms;
	if (emu_parse_long(s, -1000000, 1000000, &v) == 0)
		sink += (size_t)v;
	struct json_object *o = emu_json_parse(in, size);
	if (o) {
		size_t len = 0;
		const char *c = emu_json_compact(o, &len);
		if (c && len)
			sink += (unsigned char)c[len - 1];
		json_object_put(o);
	}
	free(s);
	return 0;
}

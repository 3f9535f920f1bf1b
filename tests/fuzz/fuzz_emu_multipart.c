/*
 * fuzz_emu_multipart.c - libFuzzer target for the emulator's upload parsing
 * (tests/emulator/emu_multipart.c, linked directly): the first input line is the
 * Content-Type header, the rest the request body.
 */
#include "emu.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size < 512 ? size : 512);
	size_t hlen = nl ? (size_t)(nl - data) : 0;
	char ctype[513], boundary[128];
	struct emu_form form;
	const char *why = NULL;

	if (!nl)
		return 0;
	memcpy(ctype, data, hlen);
	ctype[hlen] = '\0';
	if (emu_multipart_boundary(ctype, boundary, sizeof(boundary)) != 0)
		return 0;
	/* The HTTP layer hands over a heap copy of exactly the body bytes. */
	size_t blen = size - hlen - 1;
	char *body = malloc(blen ? blen : 1);
	if (!body)
		return 0;
	memcpy(body, nl + 1, blen);
	memset(&form, 0, sizeof(form));
	if (emu_multipart_parse(body, blen, boundary, &form, &why) == 0) {
		for (size_t i = 0; i < form.n; i++) {
			sink += strlen(form.parts[i].name);
			if (form.parts[i].filename)
				sink += strlen(form.parts[i].filename);
			if (form.parts[i].len)
				sink += (unsigned char)form.parts[i].data[form.parts[i].len - 1];
		}
		emu_form_release(&form);
	} else if (why) {
		sink += strlen(why);
	}
	free(body);
	return 0;
}

/*
 * api_doc.h - JSON documents the filesystem shows to users, validated and formatted by the
 * API layer (the only layer that sees json-c). All functions are pure and thread-safe.
 */
#ifndef IMAGESFS_API_DOC_H
#define IMAGESFS_API_DOC_H

#include <stddef.h>

struct api_variant;

/* Checks that text[0..len) holds exactly one JSON object (whitespace allowed around it).
 * On success returns 0 and, when compact_out is non-NULL, a malloc'd compact serialization.
 * Returns -EINVAL for anything else (invalid JSON, trailing garbage, non-object root, depth
 * over 32), -ENOMEM on allocation failure. */
int api_json_object_normalize(const char *text, size_t len, char **compact_out);

/* Parses a variant document, the content of a variants/<name> file:
 *   {"options":{...},"neverRequireSignedURLs":true}
 * "options" (an object) is required; "neverRequireSignedURLs" (a boolean) is optional
 * (*never_out = -1 when absent); an "id" member is accepted and ignored; any other member
 * is -EINVAL. *options_out receives malloc'd compact JSON of the options object. */
int api_variant_doc_parse(const char *text, size_t len, char **options_out, int *never_out);

/* Formats v as a variant document (without its id) followed by a newline. malloc'd;
 * NULL on allocation failure. */
char *api_variant_doc_format(const struct api_variant *v);

/* Formats {"count":{"allowed":A,"current":C}} followed by a newline into buf. Returns the
 * length written (snprintf semantics). */
int api_stats_doc_format(long long allowed, long long current, char *buf, size_t len);

#endif

/*
 * api_stamp.h - the file attributes imagesfs stores with an image: one reserved key in the
 * image's metadata object.
 *
 *   {"album":"x", "imagesfs":"v1 m=1577836800.000000000 s=12345"}
 *
 * The value is a string: a version tag, then optional "m=SECONDS.NANOSECONDS" (the file's
 * mtime, set by utimensat) and "s=BYTES" (the size of the bytes uploaded with it). Other
 * clients see the key (the API has nowhere else to keep it); the filesystem hides it from
 * user.metadata and keeps it when user.metadata is written. The key counts towards the API's
 * 1024-byte metadata limit. A value that is not a string of this form (malformed, or a
 * foreign program's use of the key) is ignored: it reads as "no stamp" and is replaced by
 * the next stamp written. All functions are pure and thread-safe.
 */
#ifndef IMAGESFS_API_STAMP_H
#define IMAGESFS_API_STAMP_H

#include <stddef.h>
#include <stdint.h>

#define API_STAMP_KEY "imagesfs"
/* Longest stamp value: "v1 m=-9223372036854775808.999999999 s=18446744073709551615". */
#define API_STAMP_VALUE_MAX 64

/* Bytes a stamp adds to a metadata object at most while mtimes are before 2286 and sizes at
 * most 10 MB: ,"imagesfs":"v1 m=SSSSSSSSSS.NNNNNNNNN s=10485760" (14 + 38). With stamps on,
 * user metadata may use API_MAX_METADATA_BYTES - API_STAMP_RESERVE = 972 bytes. */
#define API_STAMP_RESERVE 52

struct api_stamp {
	int has_mtime;
	int64_t mtime_sec;
	int32_t mtime_nsec; /* 0..999999999 */
	int64_t size;	    /* -1 = none */
};

/* An empty stamp (no mtime, no size). */
void api_stamp_init(struct api_stamp *st);
int api_stamp_empty(const struct api_stamp *st);

/* Formats the key's value into buf (at least API_STAMP_VALUE_MAX bytes). Returns its length,
 * or -EINVAL for an empty stamp or an out-of-range nanosecond field. */
int api_stamp_format(const struct api_stamp *st, char *buf, size_t len);
/* Parses a value written by api_stamp_format. 0, or -EINVAL (then *st is empty). */
int api_stamp_parse(const char *value, struct api_stamp *st);

/* Splits metadata text (a JSON object as the API returns it; NULL = none) into the user's
 * part and the stamp. *user_out: malloc'd compact JSON object without the reserved key, or
 * NULL when nothing else remains. *st: the stamp, empty when the key is absent or its value
 * is malformed or foreign. Text that is not a JSON object is passed through as the user's
 * part untouched, with an empty stamp. 0 or -ENOMEM (then *user_out is NULL). */
int api_stamp_split(const char *meta, struct api_stamp *st, char **user_out);

/* Builds the metadata object to store: the user's object (compact JSON text, NULL = none;
 * any reserved key in it is dropped) plus the stamp as the reserved key (left out when st is
 * NULL or empty). *out is malloc'd compact JSON ("{}" when both are empty). -EINVAL when user
 * is not a JSON object, -E2BIG when the result is over API_MAX_METADATA_BYTES (1024), -ENOMEM.
 * *out is NULL on failure. */
int api_stamp_join(const char *user, const struct api_stamp *st, char **out);

#endif

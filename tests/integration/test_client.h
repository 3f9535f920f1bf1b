/*
 * test_client.h - helpers shared by test_client.c and test_client_more.c.
 */
#ifndef IMAGESFS_TEST_CLIENT_H
#define IMAGESFS_TEST_CLIENT_H

#include "api.h"
#include "emu_proc.h"

#include <stddef.h>
#include <stdint.h>

#define TC_TOKEN "itest-token"
#define TC_ACCOUNT "0123456789abcdef0123456789abcdef" /* the emulator's default account */
#define TC_PNG                                                                                     \
	"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00"     \
	"\x00\x00\x01\x08\x00\x00\x00\x00\x3a\x7e\x9b\x55\x00\x00\x00\x0a\x49\x44\x41\x54\x78"     \
	"\x9c\x63\xa8\x07\x00\x00\x81\x00\x80\xd3\x94\x53\x4a\x00\x00\x00\x00\x49\x45\x4e\x44"     \
	"\xae\x42\x60\x82"

struct tc_image {
	const char *ext;
	const char *mime;
	const char *data;
	size_t len;
};
#define TC_NIMAGES 5
extern const struct tc_image TC_IMAGES[TC_NIMAGES];

/* The emulator of the current test and a client for it (token auth, 3 attempts). */
extern struct emu_proc E;
extern struct api_client *C;

/* Starts E with args and extra env ("NAME=VALUE"), token TC_TOKEN, and makes C. */
void tc_emu_start(const char *const *args, const char *const *env_extra);
/* Frees C, stops E and checks it exited 0. */
void tc_emu_stop(void);
void tc_default_setup(void);
void tc_default_teardown(void);

struct api_client *tc_client(const char *token, const char *email, const char *key,
			     int max_attempts);
struct api_client *tc_client_url(const char *url, const char *token, const char *email,
				 const char *key, int max_attempts);

/* An unlinked temp file holding data. */
int tc_memfd(const void *data, size_t len);
/* Uploads data through C. out nullable (released when NULL). */
int tc_upload(const char *id, const void *data, size_t len, const char *filename, const char *meta,
	      const char *creator, int rsu, struct api_image *out, struct api_err *err);
/* Downloads a blob; malloc'd bytes (NUL-terminated) or NULL with *rc_out < 0. */
char *tc_blob(struct api_client *c, const char *id, size_t *len, char *ct, size_t ctlen,
	      int *rc_out);
int64_t tc_now_ms(void);
int64_t tc_mono_ms(void);

struct tc_list {
	int n;
	const char *want_id;
	int found;
	int64_t last_ms;
	int ascending;	/* neighbours with increasing upload time */
	int descending; /* neighbours with decreasing upload time */
};
/* Lists all images through C, counting into l. */
int tc_list(const struct api_list_opts *o, struct tc_list *l, int *requests);

#endif

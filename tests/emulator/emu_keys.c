/*
 * emu_keys.c - signing keys (images/v1/keys) and account stats (images/v1/stats).
 * Keys are few and rarely change, so one mutex guards them and is held while keys.json is
 * rewritten (which keeps the file in the same order as the changes).
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_RANDOM_BYTES 32

static void new_value(char out[48])
{
	unsigned char r[KEY_RANDOM_BYTES];

	emu_random_bytes(r, sizeof(r));
	emu_base64url(r, sizeof(r), out);
}

static bool name_ok(const char *s, size_t n)
{
	return emu_alnum_ok(s, n, EMU_MAX_KEY_NAME);
}

static void keys_json_locked(struct emu_keys *k, struct emu_buf *b)
{
	size_t i;

	emu_buf_puts(b, "{\"keys\":[");
	for (i = 0; i < k->n; i++) {
		emu_buf_printf(b, "%s{\"name\":\"%s\",\"value\":\"%s\"}", i ? "," : "",
			       k->keys[i].name, k->keys[i].value);
	}
	emu_buf_puts(b, "]}");
}

static int persist_locked(struct emu_keys *k)
{
	struct emu_buf b;
	int rc;

	if (!k->persist)
		return 0;
	emu_buf_init(&b, 0);
	keys_json_locked(k, &b);
	rc = b.err ? b.err : emu_persist_write_doc(k->persist, "keys.json", b.data, b.len);
	emu_buf_release(&b);
	if (rc)
		fprintf(stderr, "imagesfs-emulator: cannot write keys.json: %s\n", strerror(-rc));
	return rc;
}

static int add_locked(struct emu_keys *k, const char *name)
{
	struct emu_key *nk = realloc(k->keys, (k->n + 1) * sizeof(*nk));

	if (!nk)
		return -ENOMEM;
	k->keys = nk;
	snprintf(nk[k->n].name, sizeof(nk[k->n].name), "%s", name);
	new_value(nk[k->n].value);
	k->n++;
	return 0;
}

static int load(struct emu_keys *k)
{
	struct json_object *doc, *arr, *it, *nm, *val;
	size_t i;
	int err;

	doc = emu_persist_read_doc(k->persist, "keys.json", &err);
	if (!doc)
		return err;
	if (!json_object_object_get_ex(doc, "keys", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		goto bad;
	for (i = 0; i < json_object_array_length(arr) && k->n < EMU_MAX_KEYS; i++) {
		it = json_object_array_get_idx(arr, i);
		if (!json_object_object_get_ex(it, "name", &nm) ||
		    !json_object_object_get_ex(it, "value", &val) ||
		    !name_ok(json_object_get_string(nm), (size_t)json_object_get_string_len(nm)) ||
		    json_object_get_string_len(val) >= 48 ||
		    add_locked(k, json_object_get_string(nm)))
			goto bad;
		snprintf(k->keys[k->n - 1].value, 48, "%s", json_object_get_string(val));
	}
	json_object_put(doc);
	return 0;
bad:
	json_object_put(doc);
	fprintf(stderr, "imagesfs-emulator: malformed keys.json in data dir\n");
	return -EBADMSG;
}

int emu_keys_init(struct emu_keys *k, struct emu_persist *p)
{
	int rc = 0;

	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->persist = p;
	if (p)
		rc = load(k);
	if (!rc && k->n == 0) {
		rc = add_locked(k, "default");
		if (!rc)
			rc = persist_locked(k);
	}
	if (rc)
		emu_keys_release(k);
	return rc;
}

void emu_keys_release(struct emu_keys *k)
{
	free(k->keys);
	k->keys = NULL;
	k->n = 0;
	pthread_mutex_destroy(&k->lock);
}

size_t emu_keys_snapshot(struct emu_keys *k, struct emu_key *out, size_t max)
{
	size_t n;

	pthread_mutex_lock(&k->lock);
	n = k->n < max ? k->n : max;
	memcpy(out, k->keys, n * sizeof(*out));
	pthread_mutex_unlock(&k->lock);
	return n;
}

static void reply_keys_locked(struct emu_req *rq, struct emu_keys *k)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	keys_json_locked(k, &b);
	emu_reply_result_end(rq, &b);
}

void emu_h_keys_list(struct emu *e, struct emu_req *rq)
{
	pthread_mutex_lock(&e->keys.lock);
	reply_keys_locked(rq, &e->keys);
	pthread_mutex_unlock(&e->keys.lock);
}

static ssize_t find_locked(struct emu_keys *k, const char *name)
{
	size_t i;

	for (i = 0; i < k->n; i++) {
		if (!strcmp(k->keys[i].name, name))
			return (ssize_t)i;
	}
	return -1;
}

static bool check_name(struct emu_req *rq)
{
	if (name_ok(rq->seg[1], rq->seglen[1]))
		return true;
	emu_reply_error(rq, 400, 5400, "Signing key name must be 1-20 characters of [A-Za-z0-9]");
	return false;
}

void emu_h_keys_put(struct emu *e, struct emu_req *rq)
{
	struct emu_keys *k = &e->keys;
	ssize_t i;
	int rc = 0;

	if (!check_name(rq))
		return;
	pthread_mutex_lock(&k->lock);
	i = find_locked(k, rq->seg[1]);
	if (i >= 0)
		new_value(k->keys[i].value); /* PUT on an existing name rotates its value */
	else if (k->n >= EMU_MAX_KEYS)
		rc = -ENOSPC;
	else
		rc = add_locked(k, rq->seg[1]);
	if (!rc)
		rc = persist_locked(k);
	if (!rc)
		reply_keys_locked(rq, k);
	pthread_mutex_unlock(&k->lock);
	if (rc == -ENOSPC)
		emu_reply_error(rq, 403, 5453, "The given account has reached a service limit");
	else if (rc)
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
}

void emu_h_keys_delete(struct emu *e, struct emu_req *rq)
{
	struct emu_keys *k = &e->keys;
	ssize_t i;
	int rc = 0;

	if (!check_name(rq))
		return;
	pthread_mutex_lock(&k->lock);
	i = find_locked(k, rq->seg[1]);
	if (i < 0) {
		rc = -ENOENT;
	} else {
		memmove(&k->keys[i], &k->keys[i + 1], (k->n - (size_t)i - 1) * sizeof(*k->keys));
		k->n--;
		if (k->n == 0)
			rc = add_locked(k, "default"); /* the last key removed: new default */
		if (!rc)
			rc = persist_locked(k);
	}
	if (!rc)
		reply_keys_locked(rq, k);
	pthread_mutex_unlock(&k->lock);
	if (rc == -ENOENT)
		emu_reply_error(rq, 404, 5404, "Signing key not found");
	else if (rc)
		emu_reply_error(rq, 500, 5540, "Error received from the storage");
}

void emu_h_stats(struct emu *e, struct emu_req *rq)
{
	struct emu_buf b;

	emu_buf_init(&b, 0);
	emu_reply_result_begin(&b);
	emu_buf_printf(&b, "{\"count\":{\"allowed\":%ld,\"current\":%zu}}", e->allowed,
		       emu_store_count(&e->store));
	emu_reply_result_end(rq, &b);
}

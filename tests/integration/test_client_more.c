/*
 * test_client_more.c - integration tests, part two: listing and paging, keys, variants,
 * stats and limits, auth, persistence, threads, injected faults, a dead server.
 */
#include "test_client.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void tc_add_more_tests(Suite *s);

static void add_fault(const char *rule)
{
	int status = 0;
	char out[512];
	ck_assert_int_eq(
	    emu_proc_http(&E, "POST", "/__emulator/faults", rule, &status, out, sizeof(out)), 0);
	ck_assert_msg(status == 200, "fault rule refused: %d %s", status, out);
}

/* ---- listing ------------------------------------------------------------------------ */

START_TEST(test_list_v2_pages_of_ten)
{
	struct tc_list l = {0};
	int nreq = 0;
	ck_assert_int_eq(emu_proc_seed(&E, 25, "seed-"), 0);
	struct api_list_opts o = {.per_page = 10};
	ck_assert_int_eq(tc_list(&o, &l, &nreq), 0);
	ck_assert_int_eq(l.n, 25);
	ck_assert_int_eq(nreq, 3);
	ck_assert_int_eq(emu_proc_stat(&E, "images.list_v2"), 3);
	ck_assert_int_eq(l.ascending, 0); /* default order: newest first */
	ck_assert_int_gt(l.descending, 0);
	/* Ascending order, and max_pages. */
	struct tc_list asc = {0};
	struct api_list_opts oa = {.per_page = 10, .sort_asc = 1};
	ck_assert_int_eq(tc_list(&oa, &asc, &nreq), 0);
	ck_assert_int_eq(asc.n, 25);
	ck_assert_int_eq(asc.descending, 0);
	ck_assert_int_gt(asc.ascending, 0);
	struct tc_list one = {0};
	struct api_list_opts om = {.per_page = 10, .max_pages = 1};
	ck_assert_int_eq(tc_list(&om, &one, &nreq), 0);
	ck_assert_int_eq(one.n, 10);
	ck_assert_int_eq(nreq, 1);
}
END_TEST

START_TEST(test_list_v2_exact_full_pages_and_empty)
{
	struct tc_list l = {0};
	int nreq = 0;
	struct api_list_opts o = {.per_page = 10};
	ck_assert_int_eq(tc_list(&o, &l, &nreq), 0); /* empty account */
	ck_assert_int_eq(l.n, 0);
	ck_assert_int_eq(nreq, 1);
	ck_assert_int_eq(emu_proc_seed(&E, 20, "full-"), 0);
	long before = emu_proc_stat(&E, "images.list_v2");
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(tc_list(&o, &l, &nreq), 0);
	ck_assert_int_eq(l.n, 20);
	/* Two full pages, plus an empty third if the server hands out a token on page two. */
	ck_assert_int_ge(nreq, 2);
	ck_assert_int_le(nreq, 3);
	ck_assert_int_eq(emu_proc_stat(&E, "images.list_v2") - before, nreq);
}
END_TEST

START_TEST(test_list_v2_ten_thousand_in_one_request)
{
	struct tc_list l = {.want_id = "big-009999"};
	int nreq = 0;
	ck_assert_int_eq(emu_proc_seed(&E, 10000, "big-"), 0);
	ck_assert_int_eq(tc_list(NULL, &l, &nreq), 0);
	ck_assert_int_eq(l.n, 10000);
	ck_assert_int_eq(l.found, 1);
	ck_assert_int_eq(nreq, 1);
	ck_assert_int_eq(emu_proc_stat(&E, "images.list_v2"), 1);
	/* 10001 images: two requests. */
	ck_assert_int_eq(
	    tc_upload("one-more", TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(tc_list(NULL, &l, &nreq), 0);
	ck_assert_int_eq(l.n, 10001);
	ck_assert_int_eq(nreq, 2);
}
END_TEST

static int count_only(const struct api_image *img, void *arg)
{
	(void)img;
	(*(int *)arg)++;
	return 0;
}

START_TEST(test_list_v1_and_creator_filter)
{
	size_t n = 0;
	int cnt = 0;
	struct api_err e;
	ck_assert_int_eq(emu_proc_seed(&E, 25, "v1-"), 0);
	ck_assert_int_eq(api_images_list_v1(C, 1, 10, NULL, count_only, &cnt, &n, &e), 0);
	ck_assert_uint_eq(n, 10);
	ck_assert_int_eq(cnt, 10);
	ck_assert_int_eq(api_images_list_v1(C, 3, 10, NULL, NULL, NULL, &n, &e), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(api_images_list_v1(C, 4, 10, NULL, NULL, NULL, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(api_images_list_v1(C, 1, 5, NULL, NULL, NULL, &n, &e), -EINVAL);
	ck_assert_int_eq(e.cf_code, 5400); /* per_page below the minimum of 10 */
	for (int i = 0; i < 2; i++) {
		char id[32];
		snprintf(id, sizeof(id), "alice/%d", i);
		ck_assert_int_eq(tc_upload(id, TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, "alice b",
					   -1, NULL, NULL),
				 0);
	}
	struct tc_list l = {0};
	struct api_list_opts o = {.creator = "alice b"};
	ck_assert_int_eq(tc_list(&o, &l, NULL), 0);
	ck_assert_int_eq(l.n, 2);
	struct tc_list nocreator = {0};
	struct api_list_opts o2 = {.creator = ""};
	ck_assert_int_eq(tc_list(&o2, &nocreator, NULL), 0);
	ck_assert_int_eq(nocreator.n, 25);
	ck_assert_int_eq(api_images_list_v1(C, 1, 100, "alice b", NULL, NULL, &n, &e), 0);
	ck_assert_uint_eq(n, 2);
}
END_TEST

/* ---- keys, variants, stats ---------------------------------------------------------- */

static int has_key(const struct api_key_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->keys[i].name, name) == 0)
			return 1;
	return 0;
}

START_TEST(test_keys_lifecycle)
{
	struct api_key_list l;
	struct api_err e;
	ck_assert_int_eq(api_keys_list(C, &l, &e), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.keys[0].name, "default");
	char *old = strdup(l.keys[0].value);
	api_key_list_release(&l);
	ck_assert_int_eq(api_key_put(C, "k1", &l, &e), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert(has_key(&l, "k1") && has_key(&l, "default"));
	api_key_list_release(&l);
	ck_assert_int_eq(api_key_delete(C, "default", &l, &e), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.keys[0].name, "k1");
	api_key_list_release(&l);
	ck_assert_int_eq(api_key_delete(C, "k1", &l, &e), 0); /* last one: default regenerated */
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.keys[0].name, "default");
	ck_assert_str_ne(l.keys[0].value, old);
	api_key_list_release(&l);
	ck_assert_int_eq(api_key_delete(C, "ghost", NULL, &e), -ENOENT);
	ck_assert_int_eq(api_key_put(C, "bad-name!", NULL, &e), -EINVAL);
	ck_assert_int_eq(e.cf_code, 5400);
	ck_assert_int_eq(api_key_put(C, "k2", NULL, &e), 0); /* out is nullable */
	free(old);
}
END_TEST

START_TEST(test_variants_lifecycle_and_limit)
{
	struct api_variant_list l;
	struct api_variant v;
	struct api_err e;
	ck_assert_int_eq(api_variants_list(C, &l, &e), 0);
	size_t have = l.n;
	int public_found = 0;
	for (size_t i = 0; i < l.n; i++)
		public_found |= strcmp(l.v[i].id, "public") == 0;
	ck_assert(public_found);
	api_variant_list_release(&l);
	const char *opts = "{\"fit\":\"cover\",\"metadata\":\"none\",\"width\":100,\"height\":80}";
	ck_assert_int_eq(api_variant_create(C, "thumb", opts, 1, &v, &e), 0);
	ck_assert_str_eq(v.id, "thumb");
	ck_assert_int_eq(v.never_require_signed_urls, 1);
	ck_assert_ptr_nonnull(strstr(v.options_json, "\"width\":100"));
	api_variant_release(&v);
	ck_assert_int_eq(api_variant_create(C, "thumb", opts, -1, NULL, &e), -EEXIST);
	ck_assert_int_eq(
	    api_variant_edit(C, "thumb",
			     "{\"fit\":\"contain\",\"metadata\":\"keep\",\"width\":200,"
			     "\"height\":80}",
			     0, &v, &e),
	    0);
	ck_assert_int_eq(v.never_require_signed_urls, 0);
	api_variant_release(&v);
	ck_assert_int_eq(api_variant_get(C, "thumb", &v, &e), 0);
	ck_assert_ptr_nonnull(strstr(v.options_json, "\"width\":200"));
	ck_assert_ptr_nonnull(strstr(v.options_json, "\"contain\""));
	api_variant_release(&v);
	ck_assert_int_eq(
	    api_variant_create(C, "bad", "{\"fit\":\"bogus\",\"width\":1}", -1, NULL, &e), -EINVAL);
	ck_assert_int_eq(api_variant_create(C, "neg", "{\"width\":-5}", -1, NULL, &e), -EINVAL);
	ck_assert_int_eq(api_variant_create(C, "bad-id!", opts, -1, NULL, &e), -EINVAL);
	ck_assert_int_eq(api_variant_delete(C, "public", &e), -EINVAL);
	ck_assert_int_eq(e.cf_code, 5400);
	/* Fill up to the limit of 100; the 101st is refused. */
	for (size_t i = have + 1; i < API_MAX_VARIANTS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "v%zu", i);
		ck_assert_int_eq(api_variant_create(C, id, "{\"width\":10}", -1, NULL, &e), 0);
	}
	ck_assert_int_eq(api_variants_list(C, &l, &e), 0);
	ck_assert_uint_eq(l.n, API_MAX_VARIANTS);
	api_variant_list_release(&l);
	ck_assert_int_eq(api_variant_create(C, "onetoomany", "{\"width\":10}", -1, NULL, &e),
			 -ENOSPC);
	ck_assert_int_eq(e.cf_code, 5453);
	ck_assert_int_eq(api_variant_delete(C, "thumb", &e), 0);
	ck_assert_int_eq(api_variant_get(C, "thumb", &v, &e), -ENOENT);
	ck_assert_int_eq(api_variant_create(C, "onetoomany", "{\"width\":10}", -1, NULL, &e), 0);
}
END_TEST

START_TEST(test_stats_and_allowed_limit)
{
	struct api_stats st;
	struct api_err e;
	ck_assert_int_eq(api_stats_get(C, &st, &e), 0);
	ck_assert_int_eq(st.current, 0);
	ck_assert_int_eq(st.allowed, 3);
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s%d", i);
		ck_assert_int_eq(
		    tc_upload(id, TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	}
	ck_assert_int_eq(
	    tc_upload("s3", TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, &e), -ENOSPC);
	ck_assert_int_eq(e.cf_code, 5453);
	ck_assert_int_eq(api_stats_get(C, &st, &e), 0);
	ck_assert_int_eq(st.current, 3);
	ck_assert_int_eq(api_image_delete(C, "s0", &e), 0);
	ck_assert_int_eq(api_stats_get(C, &st, &e), 0);
	ck_assert_int_eq(st.current, 2);
}
END_TEST

static void allowed3_setup(void)
{
	static const char *const args[] = {"--allowed", "3", NULL};
	tc_emu_start(args, NULL);
}

/* ---- auth ------------------------------------------------------------------------------ */

static void authkey_setup(void)
{
	static const char *const env[] = {"IMAGESFS_EMULATOR_AUTH_KEY=me@example.com:authkey123",
					  NULL};
	tc_emu_start(NULL, env);
}

START_TEST(test_auth_token_and_email_key)
{
	struct api_stats st;
	struct api_err e;
	ck_assert_int_eq(api_stats_get(C, &st, &e), 0);
	struct api_client *bad = tc_client("wrong-token", NULL, NULL, 3);
	ck_assert_int_eq(api_stats_get(bad, &st, &e), -EACCES);
	ck_assert_int_eq(e.cf_code, 10000);
	ck_assert_int_eq(e.attempts, 1); /* auth failures are not retried */
	api_client_free(bad);
	struct api_client *ek = tc_client(NULL, "me@example.com", "authkey123", 3);
	ck_assert_int_eq(api_stats_get(ek, &st, &e), 0);
	ck_assert_int_eq(
	    tc_upload("by/key", TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	struct api_image img;
	ck_assert_int_eq(api_image_get(ek, "by/key", &img, &e), 0);
	api_image_release(&img);
	api_client_free(ek);
	struct api_client *wk = tc_client(NULL, "me@example.com", "wrongkey", 3);
	ck_assert_int_eq(api_stats_get(wk, &st, &e), -EACCES);
	api_client_free(wk);
	struct api_client *we = tc_client(NULL, "other@example.com", "authkey123", 3);
	ck_assert_int_eq(api_stats_get(we, &st, &e), -EACCES);
	api_client_free(we);
}
END_TEST

/* ---- persistence ----------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

START_TEST(test_persistence_across_restart)
{
	char dir[] = "/tmp/imagesfs_itest_data_XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	const char *const args[] = {"--data", dir, NULL};
	tc_emu_start(args, NULL);
	for (int i = 0; i < TC_NIMAGES; i++) {
		char id[32];
		snprintf(id, sizeof(id), "keep/%s", TC_IMAGES[i].ext);
		ck_assert_int_eq(tc_upload(id, TC_IMAGES[i].data, TC_IMAGES[i].len, "f",
					   "{\"n\":1}", "me", -1, NULL, NULL),
				 0);
	}
	ck_assert_int_eq(api_variant_create(C, "kept", "{\"width\":7}", 1, NULL, NULL), 0);
	ck_assert_int_eq(api_key_put(C, "kept", NULL, NULL), 0);
	tc_emu_stop();

	tc_emu_start(args, NULL);
	struct tc_list l = {0};
	ck_assert_int_eq(tc_list(NULL, &l, NULL), 0);
	ck_assert_int_eq(l.n, TC_NIMAGES);
	for (int i = 0; i < TC_NIMAGES; i++) {
		char id[32], ct[64];
		size_t len;
		int rc;
		struct api_image img;
		snprintf(id, sizeof(id), "keep/%s", TC_IMAGES[i].ext);
		ck_assert_int_eq(api_image_get(C, id, &img, NULL), 0);
		ck_assert_str_eq(img.meta_json, "{\"n\":1}");
		ck_assert_str_eq(img.creator, "me");
		api_image_release(&img);
		char *b = tc_blob(C, id, &len, ct, sizeof(ct), &rc);
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(len, TC_IMAGES[i].len);
		ck_assert_mem_eq(b, TC_IMAGES[i].data, len);
		ck_assert_str_eq(ct, TC_IMAGES[i].mime);
		free(b);
	}
	struct api_variant v;
	ck_assert_int_eq(api_variant_get(C, "kept", &v, NULL), 0);
	ck_assert_int_eq(v.never_require_signed_urls, 1);
	api_variant_release(&v);
	struct api_key_list kl;
	ck_assert_int_eq(api_keys_list(C, &kl, NULL), 0);
	ck_assert_uint_eq(kl.n, 2);
	api_key_list_release(&kl);
	tc_emu_stop();
	ck_assert_int_eq(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}
END_TEST

/* ---- threads ------------------------------------------------------------------------------ */

#define TH_N 8
#define TH_ITERS 12

struct th_arg {
	int k;
	int failures;
	char first_error[200];
};

static int th_fail(struct th_arg *a, const char *what, int rc, const struct api_err *e)
{
	char buf[160];
	if (!a->failures++)
		snprintf(a->first_error, sizeof(a->first_error), "thread %d %s: %d %s", a->k, what,
			 rc, api_err_str(e, buf, sizeof(buf)));
	return -1;
}

static int th_iteration(struct th_arg *a, int i)
{
	char id[64], data[128];
	struct api_err e;
	struct api_image img;
	snprintf(id, sizeof(id), "thread %d/img %d.png", a->k, i);
	int dl = snprintf(data, sizeof(data), "%s thread %d iteration %d", TC_PNG, a->k, i);
	int fd = tc_memfd(data, (size_t)dl);
	struct api_upload up = {.id = id, .fd = fd, .filename = "t.png", .require_signed_urls = -1};
	int rc = api_image_upload(C, &up, &img, &e);
	close(fd);
	if (rc)
		return th_fail(a, "upload", rc, &e);
	api_image_release(&img);
	if ((rc = api_image_get(C, id, &img, &e)) != 0)
		return th_fail(a, "get", rc, &e);
	api_image_release(&img);
	size_t len = 0;
	char *b = tc_blob(C, id, &len, NULL, 0, &rc);
	if (rc || len != (size_t)dl || memcmp(b, data, len) != 0) {
		free(b);
		return th_fail(a, "blob", rc ? rc : -EIO, &e);
	}
	free(b);
	struct api_list_opts o = {.per_page = 100, .max_pages = 1};
	if ((rc = api_images_list(C, &o, NULL, NULL, NULL, &e)) != 0)
		return th_fail(a, "list", rc, &e);
	struct api_image_patch p = {.creator = "threads", .require_signed_urls = -1};
	if ((rc = api_image_edit(C, id, &p, &img, &e)) != 0)
		return th_fail(a, "edit", rc, &e);
	api_image_release(&img);
	if (i % 2 && (rc = api_image_delete(C, id, &e)) != 0)
		return th_fail(a, "delete", rc, &e);
	return 0;
}

static void *th_main(void *arg)
{
	struct th_arg *a = arg;
	for (int i = 0; i < TH_ITERS; i++)
		th_iteration(a, i);
	return NULL;
}

START_TEST(test_eight_threads_share_one_client)
{
	pthread_t th[TH_N];
	struct th_arg args[TH_N];
	for (int k = 0; k < TH_N; k++) {
		args[k] = (struct th_arg){.k = k};
		ck_assert_int_eq(pthread_create(&th[k], NULL, th_main, &args[k]), 0);
	}
	for (int k = 0; k < TH_N; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < TH_N; k++)
		ck_assert_msg(args[k].failures == 0, "%s", args[k].first_error);
	struct tc_list l = {0};
	ck_assert_int_eq(tc_list(NULL, &l, NULL), 0);
	ck_assert_int_eq(l.n, TH_N * TH_ITERS / 2);
	struct api_counters k;
	api_counters_get(C, &k);
	ck_assert_uint_ge(k.requests, TH_N * TH_ITERS * 5);
	ck_assert_uint_eq(k.retries, 0);
}
END_TEST

/* ---- faults --------------------------------------------------------------------------------- */

START_TEST(test_faults_lost_responses_are_recovered)
{
	struct api_image img;
	struct api_err e;
	/* The upload is stored but its response is lost: the retry sees 5409 and recognises it. */
	add_fault("{\"op\":\"images.upload\",\"mode\":\"close\",\"after\":true,\"count\":1}");
	ck_assert_int_eq(
	    tc_upload("lost/resp", TC_PNG, sizeof(TC_PNG) - 1, "l.png", NULL, NULL, -1, &img, &e),
	    0);
	ck_assert_str_eq(img.id, "lost/resp");
	api_image_release(&img);
	ck_assert_int_eq(emu_proc_stat(&E, "images.upload"), 2);
	/* Without a custom id the upload is not repeated: the error surfaces. */
	add_fault("{\"op\":\"images.upload\",\"mode\":\"close\",\"after\":true,\"count\":1}");
	ck_assert_int_eq(
	    tc_upload(NULL, TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, &e), -EIO);
	ck_assert_int_ne(e.curl_code, 0);
	/* A delete whose response is lost: the retry's 404 means it worked. */
	add_fault("{\"op\":\"images.delete\",\"mode\":\"close\",\"after\":true,\"count\":1}");
	ck_assert_int_eq(api_image_delete(C, "lost/resp", &e), 0);
	ck_assert_int_eq(api_image_get(C, "lost/resp", &img, &e), -ENOENT);
}
END_TEST

static void clear_faults(void)
{
	char out[256];
	int status = 0;
	ck_assert_int_eq(
	    emu_proc_http(&E, "DELETE", "/__emulator/faults", NULL, &status, out, sizeof(out)), 0);
	ck_assert_int_eq(status, 200);
}

/* Every reply of a DELETE or PATCH lost (the server acted each time): settled by reading the
 * image back (api_outcome.c). The same requests dropped before the server acts still fail. */
START_TEST(test_faults_every_reply_lost_is_settled)
{
	struct api_image img;
	struct api_err e;
	struct api_image_patch p = {.metadata_json = "{\"k\":1}", .creator = "c1",
				    .require_signed_urls = -1};
	ck_assert_int_eq(
	    tc_upload("all/lost", TC_PNG, sizeof(TC_PNG) - 1, "a.png", NULL, NULL, -1, NULL, &e), 0);
	add_fault("{\"op\":\"images.edit\",\"mode\":\"close\",\"after\":true}");
	ck_assert_int_eq(api_image_edit(C, "all/lost", &p, &img, &e), 0);
	ck_assert_str_eq(img.meta_json, "{\"k\":1}");
	ck_assert_str_eq(img.creator, "c1");
	api_image_release(&img);
	clear_faults();
	add_fault("{\"op\":\"images.edit\",\"mode\":\"close\"}");
	p.metadata_json = "{\"k\":2}";
	ck_assert_int_eq(api_image_edit(C, "all/lost", &p, &img, &e), -EIO);
	clear_faults();
	ck_assert_int_eq(api_image_get(C, "all/lost", &img, &e), 0);
	ck_assert_str_eq(img.meta_json, "{\"k\":1}");
	api_image_release(&img);
	add_fault("{\"op\":\"images.delete\",\"mode\":\"close\"}");
	ck_assert_int_eq(api_image_delete(C, "all/lost", &e), -EIO);
	clear_faults();
	ck_assert_int_eq(api_image_get(C, "all/lost", &img, &e), 0);
	api_image_release(&img);
	add_fault("{\"op\":\"images.delete\",\"mode\":\"close\",\"after\":true}");
	ck_assert_int_eq(api_image_delete(C, "all/lost", &e), 0);
	ck_assert_int_ge(e.attempts, 2);
	clear_faults();
	ck_assert_int_eq(api_image_get(C, "all/lost", &img, &e), -ENOENT);
}
END_TEST

START_TEST(test_faults_retried_statuses_and_truncation)
{
	struct api_image img;
	struct api_err e;
	size_t len;
	int rc;
	ck_assert_int_eq(
	    tc_upload("f/x", TC_PNG, sizeof(TC_PNG) - 1, NULL, NULL, NULL, -1, NULL, NULL), 0);
	add_fault("{\"op\":\"images.get\",\"mode\":\"status\",\"status\":503,\"count\":2}");
	ck_assert_int_eq(api_image_get(C, "f/x", &img, &e), 0);
	api_image_release(&img);
	add_fault("{\"op\":\"images.blob\",\"mode\":\"truncate\",\"count\":1}");
	char *b = tc_blob(C, "f/x", &len, NULL, 0, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(len, sizeof(TC_PNG) - 1);
	ck_assert_mem_eq(b, TC_PNG, len);
	free(b);
	add_fault("{\"op\":\"images.list_v2\",\"mode\":\"status\",\"status\":429,\"retry_after\":1,"
		  "\"count\":1}");
	int64_t t0 = tc_mono_ms();
	struct tc_list l = {0};
	ck_assert_int_eq(tc_list(NULL, &l, NULL), 0);
	ck_assert_int_ge(tc_mono_ms() - t0, 950);
	ck_assert_int_eq(l.n, 1);
	/* Persistent 503: EAGAIN after max_attempts (3). */
	add_fault("{\"op\":\"stats.get\",\"mode\":\"status\",\"status\":503,\"count\":5}");
	struct api_stats st;
	ck_assert_int_eq(api_stats_get(C, &st, &e), -EAGAIN);
	ck_assert_int_eq(e.attempts, 3);
	ck_assert_int_eq(e.http_status, 503);
}
END_TEST

START_TEST(test_faults_stall_times_out)
{
	struct api_config cfg = {.base_url = E.base_url,
				 .account_id = TC_ACCOUNT,
				 .token = TC_TOKEN,
				 .max_attempts = 1,
				 .rate_per_sec = -1,
				 .request_timeout_ms = 800};
	struct api_client *c;
	struct api_stats st;
	struct api_err e;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	add_fault("{\"op\":\"stats.get\",\"mode\":\"stall\",\"stall_ms\":3000,\"count\":1}");
	int64_t t0 = tc_mono_ms();
	ck_assert_int_eq(api_stats_get(c, &st, &e), -ETIMEDOUT);
	ck_assert_int_lt(tc_mono_ms() - t0, 2500);
	api_client_free(c);
}
END_TEST

/* ---- dead server ------------------------------------------------------------------------------
 */

START_TEST(test_dead_server_fails_fast)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	char url[96];
	int s = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/client/v4", ntohs(sa.sin_port));
	struct api_config cfg = {.base_url = url, .account_id = TC_ACCOUNT, .token = TC_TOKEN};
	struct api_client *c; /* defaults: 5 attempts, 30 s budget */
	struct api_image img;
	struct api_err e;
	ck_assert_int_eq(api_client_new(&cfg, &c), 0);
	int64_t t0 = tc_mono_ms();
	ck_assert_int_eq(api_image_get(c, "x", &img, &e), -EIO);
	ck_assert_int_lt(tc_mono_ms() - t0, 5000);
	ck_assert_int_eq(e.curl_code, 7); /* CURLE_COULDNT_CONNECT */
	ck_assert_int_eq(e.attempts, 5);
	int fd = tc_memfd(TC_PNG, sizeof(TC_PNG) - 1);
	struct api_upload up = {.fd = fd, .require_signed_urls = -1};
	t0 = tc_mono_ms();
	ck_assert_int_eq(api_image_upload(c, &up, &img, &e), -EIO);
	ck_assert_int_lt(tc_mono_ms() - t0, 5000);
	close(fd);
	api_client_free(c);
}
END_TEST

void tc_add_more_tests(Suite *s)
{
	TCase *tc = tcase_create("more");
	tcase_set_timeout(tc, 180);
	tcase_add_checked_fixture(tc, tc_default_setup, tc_default_teardown);
	tcase_add_test(tc, test_list_v2_pages_of_ten);
	tcase_add_test(tc, test_list_v2_exact_full_pages_and_empty);
	tcase_add_test(tc, test_list_v2_ten_thousand_in_one_request);
	tcase_add_test(tc, test_list_v1_and_creator_filter);
	tcase_add_test(tc, test_keys_lifecycle);
	tcase_add_test(tc, test_variants_lifecycle_and_limit);
	tcase_add_test(tc, test_eight_threads_share_one_client);
	tcase_add_test(tc, test_faults_lost_responses_are_recovered);
	tcase_add_test(tc, test_faults_every_reply_lost_is_settled);
	tcase_add_test(tc, test_faults_retried_statuses_and_truncation);
	tcase_add_test(tc, test_faults_stall_times_out);
	suite_add_tcase(s, tc);

	TCase *lim = tcase_create("allowed");
	tcase_add_checked_fixture(lim, allowed3_setup, tc_default_teardown);
	tcase_add_test(lim, test_stats_and_allowed_limit);
	suite_add_tcase(s, lim);

	TCase *auth = tcase_create("auth");
	tcase_add_checked_fixture(auth, authkey_setup, tc_default_teardown);
	tcase_add_test(auth, test_auth_token_and_email_key);
	suite_add_tcase(s, auth);

	TCase *solo = tcase_create("solo");
	tcase_set_timeout(solo, 120);
	tcase_add_test(solo, test_persistence_across_restart);
	tcase_add_test(solo, test_dead_server_fails_fast);
	suite_add_tcase(s, solo);
}

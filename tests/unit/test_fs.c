/*
 * test_fs.c - unit tests of the filesystem's pure pieces: the inode table (fs_node.c) and
 * how listed images become nodes (fs_list.c): nested ids, hidden ids, variant URL pattern,
 * node lifetime across unlink/forget/open, rename moves.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

static struct fs_ctx fs;

static void setup(void)
{
	memset(&fs, 0, sizeof(fs));
	fs.cfg.dir_ttl = 60;
	fs.ttl = 60;
	fs.umask = 022;
	pthread_mutex_init(&fs.lock, NULL);
	pthread_cond_init(&fs.list_cond, NULL);
	ck_assert_int_eq(fs_table_init(&fs), 0);
}

static void teardown(void)
{
	fs_table_free(&fs);
	pthread_cond_destroy(&fs.list_cond);
	pthread_mutex_destroy(&fs.lock);
}

static struct fs_node *apply(const char *id, char **variants, size_t nv, const char *meta)
{
	const char *base = strrchr(id, '/');
	struct api_image img = {.id = (char *)id,
				.filename = (char *)(base ? base + 1 : id), /* the common case */
				.meta_json = (char *)meta,
				.uploaded_ms = 1700000000123,
				.variants = variants,
				.n_variants = nv};
	return fs_images_apply_locked(&fs, &img);
}

START_TEST(test_fixed_inodes)
{
	struct fs_node *root = fs_node_get_locked(&fs, FS_INO_ROOT);
	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(fs_node_child_locked(&fs, root, "images")->ino, FS_INO_IMAGES);
	ck_assert_int_eq(fs_node_child_locked(&fs, root, "variants")->ino, FS_INO_VARIANTS);
	ck_assert_int_eq(fs_node_child_locked(&fs, root, "keys")->ino, FS_INO_KEYS);
	ck_assert_int_eq(fs_node_child_locked(&fs, root, "stats")->ino, FS_INO_STATS);
	ck_assert_ptr_null(fs_node_child_locked(&fs, root, "other"));
}
END_TEST

START_TEST(test_nested_ids)
{
	struct fs_node *n = apply("album/2024/a.jpg", NULL, 0, NULL);
	ck_assert_ptr_nonnull(n);
	ck_assert_str_eq(n->name, "a.jpg");
	ck_assert_int_eq(n->parent->kind, FS_K_DIR);
	ck_assert_str_eq(n->parent->name, "2024");
	char *id = fs_node_id_locked(&fs, n), *path = fs_node_path_locked(&fs, n);
	ck_assert_str_eq(id, "album/2024/a.jpg");
	ck_assert_str_eq(path, "images/album/2024/a.jpg");
	free(id);
	free(path);
	/* a second image in the same directory reuses it */
	struct fs_node *m = apply("album/2024/b.jpg", NULL, 0, NULL);
	ck_assert_ptr_eq(m->parent, n->parent);
	ck_assert_uint_eq(fs.n_images, 2);
}
END_TEST

START_TEST(test_hidden_ids)
{
	ck_assert_ptr_null(apply("a//b", NULL, 0, NULL));
	ck_assert_ptr_null(apply("a/../b", NULL, 0, NULL));
	ck_assert_ptr_null(apply("./b", NULL, 0, NULL));
	ck_assert_ptr_nonnull(apply("x", NULL, 0, NULL));
	ck_assert_ptr_null(apply("x/y", NULL, 0, NULL)); /* x is a file */
	ck_assert_ptr_nonnull(apply("d/y", NULL, 0, NULL));
	ck_assert_ptr_null(apply("d", NULL, 0, NULL)); /* d is a directory */
	ck_assert_uint_eq(fs.skipped_ids, 5);
}
END_TEST

START_TEST(test_compact_nodes)
{
	char *v1[] = {"https://imagedelivery.net/HASH/p1.png/public",
		      "https://imagedelivery.net/HASH/p1.png/thumb"};
	char *v2[] = {"https://imagedelivery.net/HASH/p2.png/public",
		      "https://imagedelivery.net/HASH/p2.png/thumb"};
	char *v3[] = {"https://imagedelivery.net/HASH/p3.png/public"};
	struct fs_node *a = apply("p1.png", v1, 2, NULL);
	struct fs_node *b = apply("p2.png", v2, 2, NULL);
	struct fs_node *c = apply("p3.png", v3, 1, "{\"k\":1}");
	ck_assert_ptr_null(a->u.img); /* nothing beyond the fixed fields */
	ck_assert_ptr_null(b->u.img);
	ck_assert_ptr_nonnull(c->u.img);
	ck_assert_str_eq(c->u.img->meta, "{\"k\":1}");
	ck_assert(c->flags & FS_NF_VARRAW);
	char *s = fs_img_variants_locked(&fs, b);
	ck_assert_str_eq(s, "https://imagedelivery.net/HASH/p2.png/public\n"
			    "https://imagedelivery.net/HASH/p2.png/thumb\n");
	free(s);
	s = fs_img_variants_locked(&fs, c);
	ck_assert_str_eq(s, "https://imagedelivery.net/HASH/p3.png/public\n");
	free(s);
	ck_assert_uint_lt(sizeof(struct fs_node), 112);
}
END_TEST

START_TEST(test_lifetime)
{
	struct fs_node *n = apply("life.png", NULL, 0, NULL);
	fuse_ino_t ino = n->ino;
	struct fuse_entry_param e;
	fs_node_entry_locked(&fs, n, &e); /* kernel holds one lookup */
	ck_assert_int_eq(e.ino, ino);
	ck_assert_double_eq(e.attr_timeout, 0); /* size unknown */
	ck_assert_int_eq(e.attr.st_mtim.tv_sec, 1700000000);
	n->nopen = 1;
	fs_node_unlink_locked(&fs, n);
	ck_assert_ptr_null(fs_node_child_locked(&fs, fs.fixed[FS_INO_IMAGES], "life.png"));
	ck_assert_ptr_eq(fs_node_get_locked(&fs, ino), n); /* still known to the kernel */
	fs_node_forget_locked(&fs, n, 1);
	ck_assert_ptr_eq(fs_node_get_locked(&fs, ino), n); /* still open */
	fs_node_release_open_locked(&fs, n);
	ck_assert_ptr_null(fs_node_get_locked(&fs, ino));
}
END_TEST

START_TEST(test_move_keeps_inode)
{
	struct fs_node *n = apply("dir/old.png", NULL, 0, "{\"m\":2}");
	fuse_ino_t ino = n->ino;
	n->nlookup = 3;
	n->nopen = 1; /* a handle opened during the rename holds the pointer */
	struct fs_node *dst = fs_node_new_locked(&fs, fs.fixed[FS_INO_IMAGES], "dst", FS_K_DIR);
	ck_assert_int_eq(fs_node_move_locked(&fs, n, dst, "new.png"), 0);
	/* the same node: nothing the kernel or a handle refers to is freed */
	ck_assert_int_eq(n->ino, ino);
	ck_assert_uint_eq(n->nlookup, 3);
	ck_assert_str_eq(n->u.img->meta, "{\"m\":2}");
	ck_assert_ptr_eq(fs_node_get_locked(&fs, ino), n);
	ck_assert_ptr_eq(fs_node_child_locked(&fs, dst, "new.png"), n);
	char *id = fs_node_id_locked(&fs, n);
	ck_assert_str_eq(id, "dst/new.png");
	free(id);
	/* longer than the node's inline name, then short again, then long again */
	const char *longer = "a-name-much-longer-than-the-original-one.png";
	ck_assert_int_eq(fs_node_move_locked(&fs, n, dst, longer), 0);
	ck_assert_str_eq(n->name, longer);
	ck_assert_ptr_null(fs_node_child_locked(&fs, dst, "new.png"));
	ck_assert_ptr_eq(fs_node_child_locked(&fs, dst, longer), n);
	ck_assert_int_eq(fs_node_move_locked(&fs, n, fs.fixed[FS_INO_IMAGES], "s.png"), 0);
	ck_assert_ptr_eq(fs_node_child_locked(&fs, fs.fixed[FS_INO_IMAGES], "s.png"), n);
	ck_assert_ptr_null(fs_node_child_locked(&fs, dst, longer));
	ck_assert_int_eq(fs_node_move_locked(&fs, n, dst, longer), 0);
	ck_assert_ptr_eq(fs_node_child_locked(&fs, dst, longer), n);
	/* unlinked while open and known: kept; freed (with its name) only after both go */
	fs_node_unlink_locked(&fs, n);
	ck_assert_ptr_eq(fs_node_get_locked(&fs, ino), n);
	fs_node_release_open_locked(&fs, n);
	ck_assert_ptr_eq(fs_node_get_locked(&fs, ino), n);
	fs_node_forget_locked(&fs, n, 3);
	ck_assert_ptr_null(fs_node_get_locked(&fs, ino));
}
END_TEST

START_TEST(test_many_nodes)
{
	char name[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "many-%05d", i);
		ck_assert_ptr_nonnull(apply(name, NULL, 0, NULL));
	}
	ck_assert_uint_eq(fs.n_images, 5000);
	ck_assert_uint_ge(fs.name_buckets, 4096);
	struct fs_node *n = fs_node_child_locked(&fs, fs.fixed[FS_INO_IMAGES], "many-04321");
	ck_assert_ptr_nonnull(n);
	ck_assert_ptr_eq(fs_node_get_locked(&fs, n->ino), n);
}
END_TEST

START_TEST(test_rfc3339)
{
	char buf[40];
	fs_fmt_rfc3339(1643647168458, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2022-01-31T16:39:28.458Z");
	fs_fmt_rfc3339(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
}
END_TEST

START_TEST(test_name_valid)
{
	ck_assert(fs_name_valid("a.png"));
	ck_assert(!fs_name_valid(""));
	ck_assert(!fs_name_valid("."));
	ck_assert(!fs_name_valid(".."));
	ck_assert(!fs_name_valid("a/b"));
	char long_name[300];
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[299] = '\0';
	ck_assert(!fs_name_valid(long_name));
}
END_TEST

/* .imagesfs/refresh and SIGHUP: a dropped listing is stale (and leaves the kernel nothing
 * to cache) until a listing that started after the drop succeeds. */
START_TEST(test_listing_drop_and_hup)
{
	int64_t now = fs_now_ms();
	fs.images.fresh_ms = fs.variants.fresh_ms = fs.keys.fresh_ms = now;
	ck_assert(!fs_listing_stale_locked(&fs, &fs.images));
	ck_assert(fs_listing_left_locked(&fs, &fs.images) > 59);
	fs_listings_drop_locked(&fs, FS_DROP_IMAGES);
	ck_assert(fs_listing_stale_locked(&fs, &fs.images));
	ck_assert(fs_listing_left_locked(&fs, &fs.images) == 0);
	ck_assert(!fs_listing_stale_locked(&fs, &fs.keys));
	fs.images.drops_listed = fs.images.drops; /* a listing that started after the drop */
	ck_assert(!fs_listing_stale_locked(&fs, &fs.images));
	atomic_store(&fs.hup, 1);
	ck_assert(fs_listing_stale_locked(&fs, &fs.keys));
	ck_assert(fs_listing_stale_locked(&fs, &fs.variants));
	ck_assert(fs_listing_stale_locked(&fs, &fs.images));
	ck_assert_int_eq(atomic_load(&fs.hup), 0);
	fs.images.fresh_ms = now - 61000; /* older than dir_ttl */
	fs.images.drops_listed = fs.images.drops;
	ck_assert(fs_listing_stale_locked(&fs, &fs.images));
}
END_TEST

/* A listed name is cached by the kernel no longer than its listing stays fresh; names
 * made here keep dir_ttl. */
START_TEST(test_entry_timeout_capped_by_listing)
{
	struct fs_node *n = apply("a.jpg", NULL, 0, NULL);
	struct fs_node *dir = fs.fixed[FS_INO_IMAGES];
	struct fs_node *local = fs_node_new_locked(&fs, dir, "new.jpg", FS_K_IMG);
	local->flags |= FS_NF_PENDING;
	fs.images.fresh_ms = fs_now_ms() - 59500;
	ck_assert(fs_node_entry_timeout_locked(&fs, n) <= 0.6);
	ck_assert(fs_node_dirplus_timeout_locked(&fs, n) <= 0.6);
	ck_assert(fs_node_entry_timeout_locked(&fs, local) == 60);
	fs.images.fresh_ms = fs_now_ms() - 61000;
	ck_assert(fs_node_entry_timeout_locked(&fs, n) == 0);
	ck_assert(fs_node_entry_timeout_locked(&fs, fs.fixed[FS_INO_VARIANTS]) == 60);
}
END_TEST

static void state_is(struct fs_node *n, const char *want)
{
	char *v = fs_img_state_locked(&fs, n);
	ck_assert_str_eq(v, want);
	free(v);
}

START_TEST(test_user_state)
{
	struct fs_node *n = apply("s.jpg", NULL, 0, NULL);
	state_is(n, "stored");
	fs_node_extra_locked(n)->uploading = 1;
	state_is(n, "uploading");
	n->u.img->uploading = 0;
	fs_node_extra_locked(n)->fail = strdup("EINVAL: Unsupported image format");
	state_is(n, "failed: EINVAL: Unsupported image format");
	free(n->u.img->fail);
	n->u.img->fail = NULL;
	fs_node_extra_trim_locked(n);
	struct fs_node *l = fs_node_new_locked(&fs, fs.fixed[FS_INO_IMAGES], "l.jpg", FS_K_IMG);
	l->flags |= FS_NF_PENDING;
	state_is(l, "local");
}
END_TEST

/* .imagesfs/ is linked below the root with its files, fixed modes, and no image count. */
START_TEST(test_control_tree)
{
	uint64_t images = fs.n_images;
	ck_assert_int_eq(fs_ctl_init(&fs), 0);
	struct fs_node *c = fs_node_child_locked(&fs, fs.fixed[FS_INO_ROOT], FS_CTL_DIR);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->kind, FS_K_CTLDIR);
	struct stat st;
	fs_node_attr_locked(&fs, c, &st);
	ck_assert_int_eq(st.st_mode, S_IFDIR | 0555);
	static const struct {
		const char *name;
		mode_t mode;
	} files[] = {{"status", 0444}, {"errors", 0444}, {"refresh", 0644}};
	for (size_t i = 0; i < 3; i++) {
		struct fs_node *f = fs_node_child_locked(&fs, c, files[i].name);
		ck_assert_ptr_nonnull(f);
		fs_node_attr_locked(&fs, f, &st);
		ck_assert_int_eq(st.st_mode, S_IFREG | files[i].mode);
		ck_assert(fs_node_attr_timeout_locked(&fs, f) == 0);
	}
	ck_assert_uint_eq(fs.n_images, images);
}
END_TEST

static Suite *fs_suite(void)
{
	Suite *s = suite_create("fs");
	TCase *tc = tcase_create("table");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_fixed_inodes);
	tcase_add_test(tc, test_nested_ids);
	tcase_add_test(tc, test_hidden_ids);
	tcase_add_test(tc, test_compact_nodes);
	tcase_add_test(tc, test_lifetime);
	tcase_add_test(tc, test_move_keeps_inode);
	tcase_add_test(tc, test_many_nodes);
	tcase_add_test(tc, test_rfc3339);
	tcase_add_test(tc, test_name_valid);
	tcase_add_test(tc, test_listing_drop_and_hup);
	tcase_add_test(tc, test_entry_timeout_capped_by_listing);
	tcase_add_test(tc, test_user_state);
	tcase_add_test(tc, test_control_tree);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(fs_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

/*
 * test_fs.c - unit tests of the filesystem's pure pieces: the inode table (fs_node.c) and
 * how listed images become nodes (fs_list.c): nested ids, hidden ids, variant URL pattern,
 * node lifetime across unlink/forget/open, rename moves.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A listed image's stamp gives the node its size and mtime; user.metadata is the rest. */
START_TEST(test_stamp_from_listing)
{
	struct fs_node *n =
	    apply("st.png", NULL, 0, "{\"k\":1,\"imagesfs\":\"v1 m=10.000000005 s=42\"}");
	ck_assert_ptr_nonnull(n);
	ck_assert(n->flags & FS_NF_SIZE);
	ck_assert_uint_eq(n->size, 42);
	ck_assert(n->flags & FS_NF_MTIME);
	ck_assert(!(n->flags & FS_NF_TIMES));
	ck_assert_int_eq(n->mtime_ns, 10000000005LL);
	ck_assert_str_eq(n->u.img->meta, "{\"k\":1}");
	struct stat st;
	fs_node_attr_locked(&fs, n, &st);
	ck_assert_int_eq(st.st_mtim.tv_sec, 10);
	ck_assert_int_eq(st.st_mtim.tv_nsec, 5);
	ck_assert_int_eq(st.st_size, 42);

	/* only a stamp: no user metadata */
	n = apply("st2.png", NULL, 0, "{\"imagesfs\":\"v1 s=7\"}");
	ck_assert_uint_eq(n->size, 7);
	ck_assert(!(n->flags & FS_NF_MTIME));
	ck_assert(!n->u.img || !n->u.img->meta);

	/* a foreign value: no size, no mtime, and the key stays hidden */
	n = apply("st3.png", NULL, 0, "{\"imagesfs\":{\"x\":1},\"a\":2}");
	ck_assert(!(n->flags & (FS_NF_SIZE | FS_NF_MTIME)));
	ck_assert_str_eq(n->u.img->meta, "{\"a\":2}");

	/* a mtime set here and not stored yet wins over the listing */
	n->mtime_ns = 99;
	n->flags |= FS_NF_MTIME | FS_NF_TIMES;
	apply("st3.png", NULL, 0, "{\"imagesfs\":\"v1 m=1.000000000 s=3\"}");
	ck_assert_int_eq(n->mtime_ns, 99);
	ck_assert_uint_eq(n->size, 3);
	/* ... until the listing shows it stored */
	apply("st3.png", NULL, 0, "{\"imagesfs\":\"v1 m=0.000000099 s=3\"}");
	ck_assert(!(n->flags & FS_NF_TIMES));
	ck_assert_int_eq(n->mtime_ns, 99);
}
END_TEST

/* Sizes learned here survive a reopen of the record (a remount), per (id, version). */
START_TEST(test_local_record)
{
	char dir[] = "/tmp/imagesfs-test-local.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	fs.cfg.cache_dir = dir;
	ck_assert_int_eq(fs_local_open(&fs), 0);
	fs_local_put(&fs, "a/b.png", 1700000000123, 555, 0, 0);
	fs_local_put(&fs, "a/b.png", 1700000000123, -1, 1, 77); /* adds the mtime, keeps size */
	fs_local_put(&fs, "old.png", 5, 9, 0, 0);
	fs_local_close(&fs);
	ck_assert_int_eq(fs_local_open(&fs), 0);

	struct fs_node *n = apply("a/b.png", NULL, 0, NULL); /* uploaded_ms 1700000000123 */
	ck_assert(n->flags & FS_NF_SIZE);
	ck_assert_uint_eq(n->size, 555);
	ck_assert(n->flags & FS_NF_MTIME);
	ck_assert_int_eq(n->mtime_ns, 77);
	n = apply("old.png", NULL, 0, NULL); /* another version: the record does not hold */
	ck_assert(!(n->flags & FS_NF_SIZE));
	fs_local_close(&fs);
	fs.cfg.cache_dir = NULL;
	char path[128];
	snprintf(path, sizeof(path), "%s/attrs", dir);
	unlink(path);
	rmdir(dir);
}
END_TEST

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
	tcase_add_test(tc, test_stamp_from_listing);
	tcase_add_test(tc, test_local_record);
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

/*
 * test_journal.c - unit tests of journal/: records survive a reopen (replay), the undo
 * bytes are pinned until the entry is finished, damaged or half-written records never lose
 * pinned bytes, and settling reaches the allowed state for each account state (against a
 * scripted HTTP server, no mount).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_http.h"
#include "journal.h"

static char root[256], cdir[300], jdir[300], ldir[300];
static struct cache *C;
static struct fake_http F;
static struct api_client *A;

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/test_journal.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(cdir, sizeof(cdir), "%s/cache", root);
	snprintf(jdir, sizeof(jdir), "%s/journal", root);
	snprintf(ldir, sizeof(ldir), "%s/lost", root);
	struct cache_config cc = {.dir = cdir, .max_bytes = 1 << 20};
	ck_assert_int_eq(cache_open(&cc, &C), 0);
	memset(&F, 0, sizeof(F));
	A = NULL;
}

static void teardown(void)
{
	if (A) {
		api_client_free(A);
		fake_http_stop(&F);
	}
	cache_close(C);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

static void start_api(void)
{
	ck_assert_int_eq(fake_http_start(&F), 0);
	struct api_config cfg = {.base_url = F.base_url,
				 .account_id = "acc",
				 .token = "sekret",
				 .max_attempts = 1,
				 .retry_budget_ms = 5000,
				 .rate_per_sec = -1,
				 .connect_timeout_ms = 2000,
				 .request_timeout_ms = 5000,
				 .low_speed_time_s = 5};
	ck_assert_int_eq(api_client_new(&cfg, &A), 0);
}

static struct journal *jopen(void)
{
	struct journal_config jc = {.dir = jdir, .lost_dir = ldir, .api = A, .cache = C};
	struct journal *j = NULL;
	ck_assert_int_eq(journal_open(&jc, &j), 0);
	return j;
}

static int count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (de->d_name[0] != '.' && l >= sl && !strcmp(de->d_name + l - sl, suffix))
			n++;
	}
	closedir(d);
	return n;
}

static int pins(void)
{
	struct cache_stats st;
	cache_stats_get(C, &st);
	return (int)st.pinned;
}

/* A file holding TEXT, as the "old bytes" of an image. */
static int bytes_fd(const char *text)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/src.XXXXXX", root);
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

static uint64_t begin_replace(struct journal *j, const char *id, const char *bytes)
{
	int fd = bytes ? bytes_fd(bytes) : -1;
	struct journal_intent in = {.op = JOURNAL_REPLACE,
				    .id = id,
				    .old_version = 1700000000000,
				    .old_fd = fd,
				    .meta = "{\"k\":\"v w\"}",
				    .creator = "ann",
				    .filename = "x y.png",
				    .rsu = 1};
	uint64_t seq = 0;
	ck_assert_int_eq(journal_begin(j, &in, &seq), 0);
	if (fd >= 0)
		close(fd);
	return seq;
}

START_TEST(test_begin_finish_pins)
{
	struct journal *j = jopen();
	uint64_t seq = begin_replace(j, "dir/x y.png", "OLDBYTES");
	ck_assert_int_eq(count_files(jdir, JOURNAL_SUFFIX), 1);
	ck_assert_int_eq(pins(), 1);
	struct cache_stats st;
	cache_stats_get(C, &st);
	ck_assert_uint_eq(st.pinned_bytes, 8);
	ck_assert_uint_eq(journal_pending(j), 1);
	journal_finish(j, seq);
	ck_assert_int_eq(count_files(jdir, JOURNAL_SUFFIX), 0);
	ck_assert_int_eq(pins(), 0);
	ck_assert_uint_eq(journal_pending(j), 0);
	journal_close(j);
}
END_TEST

START_TEST(test_replay_after_crash)
{
	struct journal *j = jopen();
	begin_replace(j, "a/b\nc%d", "OLD");
	journal_close(j); /* as if killed: the entry stays */
	/* A crash inside begin leaves a temp record and a pin nobody names: both go. */
	char p[400];
	snprintf(p, sizeof(p), "%s/00000000000000ff.intent.tmp", jdir);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("imagesfs-intent 1\nop replace\n", f);
	fclose(f);
	int fd = bytes_fd("STALE");
	ck_assert_int_eq(cache_pin(C, "journal-00000000000000ff", fd, NULL), 0);
	close(fd);
	ck_assert_int_eq(pins(), 2);

	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 1);
	ck_assert_int_eq(pins(), 1);
	ck_assert_int_eq(access(p, F_OK), -1);
	/* The next sequence continues after the replayed one. */
	uint64_t seq = begin_replace(j, "other", NULL);
	ck_assert_uint_eq(seq, 2);
	ck_assert_int_eq(pins(), 1); /* no bytes, no pin */
	journal_close(j);
}
END_TEST

START_TEST(test_damaged_keeps_bytes)
{
	struct journal *j = jopen();
	begin_replace(j, "x.png", "PRECIOUS");
	journal_close(j);
	char p[400];
	snprintf(p, sizeof(p), "%s/0000000000000001" JOURNAL_SUFFIX, jdir);
	ck_assert_int_eq(truncate(p, 20), 0); /* no "end" line */
	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 0);
	ck_assert_int_eq(pins(), 0);
	char lost[400], buf[32] = {0};
	snprintf(lost, sizeof(lost), "%s/journal-0000000000000001", ldir);
	int fd = open(lost, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 8);
	ck_assert_str_eq(buf, "PRECIOUS");
	close(fd);
	journal_close(j);
}
END_TEST

START_TEST(test_pins_not_evicted)
{
	/* A pin is counted against the cap and never evicted by later blobs. */
	struct journal *j = jopen();
	char big[600 * 1024];
	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	begin_replace(j, "x.png", big);
	struct cache_stats st;
	cache_stats_get(C, &st);
	ck_assert_uint_eq(st.pinned_bytes, sizeof(big) - 1);
	int sfd;
	char *sp;
	ck_assert_int_eq(cache_stage_open(C, &sfd, &sp), 0);
	ck_assert_int_eq(write(sfd, big, 500 * 1024), 500 * 1024);
	close(sfd);
	ck_assert_int_eq(cache_adopt(C, "blob", 1, sp), 0); /* over the cap beside the pin */
	free(sp);
	cache_stats_get(C, &st);
	ck_assert_uint_le(st.bytes + st.pinned_bytes, 1 << 20);
	ck_assert_uint_eq(st.pinned, 1);
	journal_close(j);
}
END_TEST

static const char *IMG_OK =
    "{\"success\":true,\"errors\":[],\"messages\":[],\"result\":{\"id\":\"x.png\","
    "\"filename\":\"x.png\",\"uploaded\":\"2030-01-01T00:00:00.000Z\","
    "\"requireSignedURLs\":false,\"variants\":[]}}";
static const char *NOT_FOUND = "{\"success\":false,\"errors\":[{\"code\":5404,\"message\":"
			       "\"Image not found\"}],\"messages\":[],\"result\":null}";
static const char *DEL_OK = "{\"success\":true,\"errors\":[],\"messages\":[],\"result\":{}}";
static const char *BAD_IMG = "{\"success\":false,\"errors\":[{\"code\":5400,\"message\":"
			     "\"Bad request: image is invalid\"}],\"messages\":[],\"result\":null}";

START_TEST(test_settle_replace_restores)
{
	start_api();
	fake_add_reply(&F, 404, NULL, NOT_FOUND); /* GET x.png: deleted */
	fake_add_reply(&F, 200, NULL, IMG_OK);	  /* upload of the pinned bytes */
	struct journal *j = jopen();
	uint64_t seq = begin_replace(j, "x.png", "OLDBYTES");
	ck_assert_int_eq(journal_settle(j, seq), JOURNAL_BEFORE);
	ck_assert_int_eq(fake_http_nreqs(&F), 2);
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "GET "));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].head, "POST "));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].body, "OLDBYTES"));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].body, "ann"));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].body, "{\"k\":\"v w\"}"));
	ck_assert_uint_eq(journal_pending(j), 0);
	ck_assert_int_eq(pins(), 0);
	journal_close(j);
}
END_TEST

START_TEST(test_settle_replace_present)
{
	start_api();
	fake_add_reply(&F, 200, NULL, IMG_OK); /* an image is there: nothing to do */
	struct journal *j = jopen();
	uint64_t seq = begin_replace(j, "x.png", "OLDBYTES");
	ck_assert_int_eq(journal_settle(j, seq), JOURNAL_AFTER);
	ck_assert_int_eq(fake_http_nreqs(&F), 1);
	ck_assert_int_eq(pins(), 0);
	journal_close(j);
}
END_TEST

START_TEST(test_settle_unreachable_keeps)
{
	start_api();
	fake_add_reply(&F, 404, NULL, NOT_FOUND);
	fake_add_reply(&F, 503, NULL,
		       "{\"success\":false,\"errors\":[{\"code\":5503,"
		       "\"message\":\"Server Unavailable\"}],\"result\":null}");
	struct journal *j = jopen();
	uint64_t seq = begin_replace(j, "x.png", "OLDBYTES");
	ck_assert_int_lt(journal_settle(j, seq), 0);
	ck_assert_uint_eq(journal_pending(j), 1);
	ck_assert_int_eq(pins(), 1);
	ck_assert_int_eq(count_files(jdir, JOURNAL_SUFFIX), 1);
	char *failed = NULL;
	ck_assert_int_eq(journal_wait(j, 50, &failed), -ETIMEDOUT);
	ck_assert_str_eq(failed, "images/x.png\n");
	free(failed);
	journal_close(j);
}
END_TEST

START_TEST(test_settle_abandon)
{
	start_api();
	fake_add_reply(&F, 404, NULL, NOT_FOUND);
	fake_add_reply(&F, 400, NULL, BAD_IMG); /* the API refuses the bytes themselves */
	struct journal *j = jopen();
	uint64_t seq = begin_replace(j, "d/x.png", "BROKEN");
	ck_assert_int_eq(journal_settle(j, seq), JOURNAL_ABANDONED);
	ck_assert_int_eq(pins(), 0);
	char lost[400];
	snprintf(lost, sizeof(lost), "%s/d%%2Fx.png.1", ldir);
	ck_assert_int_eq(access(lost, R_OK), 0);
	char *failed = NULL;
	ck_assert_int_eq(journal_wait(j, 50, &failed), -EIO);
	ck_assert_str_eq(failed, "images/d/x.png\n");
	free(failed);
	ck_assert_int_eq(journal_wait(j, 50, &failed), 0); /* reported once */
	journal_close(j);
}
END_TEST

/* A write-back upload carries two metadata objects (each with its own stamp): new_meta goes
 * with the new bytes, meta with the old image put back; both survive a reopen. */
START_TEST(test_upload_metas)
{
	start_api();
	fake_add_reply(&F, 200, NULL, DEL_OK);	/* DELETE of the old image */
	fake_add_reply(&F, 400, NULL, BAD_IMG); /* the new bytes are refused */
	fake_add_reply(&F, 200, NULL, IMG_OK);	/* the old image is put back */
	struct journal *j = jopen();
	int ofd = bytes_fd("OLDBYTES"), nfd = bytes_fd("NEWBYTES");
	struct journal_intent in = {.op = JOURNAL_UPLOAD,
				    .id = "x.png",
				    .old_version = 1700000000000,
				    .old_fd = ofd,
				    .new_fd = nfd,
				    .meta = "{\"imagesfs\":\"v1 s=8 old\"}",
				    .new_meta = "{\"imagesfs\":\"v1 s=8 new\"}",
				    .filename = "x.png"};
	uint64_t seq = 0;
	ck_assert_int_eq(journal_begin(j, &in, &seq), 0);
	close(ofd);
	close(nfd);
	journal_close(j); /* not started: the entry stays on disk */
	j = jopen();
	ck_assert_int_eq(journal_settle(j, seq), JOURNAL_ABANDONED);
	ck_assert_int_eq(fake_http_nreqs(&F), 3);
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "DELETE "));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].body, "NEWBYTES"));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].body, "v1 s=8 new"));
	ck_assert_ptr_null(strstr(F.reqs[1].body, "v1 s=8 old"));
	ck_assert_ptr_nonnull(strstr(F.reqs[2].body, "OLDBYTES"));
	ck_assert_ptr_nonnull(strstr(F.reqs[2].body, "v1 s=8 old"));
	ck_assert_ptr_null(strstr(F.reqs[2].body, "v1 s=8 new"));
	journal_close(j);
}
END_TEST

/* An uncommitted rename reads the destination: the upload landed, so the source goes. */
START_TEST(test_settle_rename)
{
	start_api();
	fake_add_reply(&F, 200, NULL, IMG_OK); /* GET dst: uploaded (not the old version) */
	fake_add_reply(&F, 200, NULL, DEL_OK); /* DELETE src */
	struct journal *j = jopen();
	struct journal_intent in = {
	    .op = JOURNAL_RENAME, .id = "b.png", .src_id = "a.png", .old_fd = -1};
	uint64_t seq;
	ck_assert_int_eq(journal_begin(j, &in, &seq), 0);
	ck_assert_int_eq(journal_hides(j, "a.png"), 0);
	ck_assert_int_eq(journal_settle(j, seq), JOURNAL_AFTER);
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "GET "));
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "b.png"));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].head, "DELETE "));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].head, "a.png"));
	ck_assert_int_eq(journal_hides(j, "a.png"), 0);
	journal_close(j);
}
END_TEST

/* A committed rename (mv returned 0) is recorded so when deferred and settles to "after"
 * only, after a reopen too: the destination is not read (a later rm may have removed it),
 * the source is deleted if it still holds the version renamed, and left alone if another
 * image is there since. */
START_TEST(test_settle_rename_committed)
{
	start_api();
	fake_add_reply(&F, 200, NULL, IMG_OK); /* GET a.png: the version renamed */
	fake_add_reply(&F, 200, NULL, DEL_OK); /* DELETE a.png */
	fake_add_reply(&F, 200, NULL, IMG_OK); /* GET c.png: another version */
	struct journal *j = jopen();
	struct journal_intent in = {.op = JOURNAL_RENAME,
				    .id = "b.png",
				    .src_id = "a.png",
				    .src_version = 1893456000000, /* IMG_OK's "uploaded" */
				    .old_fd = -1};
	uint64_t seq, seq2;
	ck_assert_int_eq(journal_begin(j, &in, &seq), 0);
	ck_assert_int_eq(journal_hides(j, "a.png"), 0);
	journal_mark_committed(j, seq);
	ck_assert_int_eq(journal_hides(j, "a.png"), 1);
	ck_assert_int_eq(journal_hides(j, "b.png"), 0);
	journal_defer(j, seq);
	in.id = "d.png";
	in.src_id = "c.png";
	in.src_version = 1700000000000;
	ck_assert_int_eq(journal_begin(j, &in, &seq2), 0);
	journal_mark_committed(j, seq2);
	journal_defer(j, seq2);
	journal_close(j); /* not started: the entries stay on disk */
	j = jopen();
	ck_assert_int_eq(journal_hides(j, "a.png"), 1); /* at once, before any settle */
	ck_assert_int_eq(journal_settle(j, seq), JOURNAL_AFTER);
	ck_assert_int_eq(fake_http_nreqs(&F), 2);
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "GET "));
	ck_assert_ptr_nonnull(strstr(F.reqs[0].head, "a.png"));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].head, "DELETE "));
	ck_assert_ptr_nonnull(strstr(F.reqs[1].head, "a.png"));
	ck_assert_int_eq(journal_hides(j, "a.png"), 0);
	ck_assert_int_eq(journal_settle(j, seq2), JOURNAL_AFTER);
	ck_assert_int_eq(fake_http_nreqs(&F), 3); /* no DELETE: c.png holds another image */
	ck_assert_uint_eq(journal_pending(j), 0);
	journal_close(j);
}
END_TEST

START_TEST(test_background_retries)
{
	start_api();
	fake_add_reply(&F, 404, NULL, NOT_FOUND);
	fake_add_action(&F, FAKE_DROP);		  /* first attempt: upload lost */
	fake_add_reply(&F, 404, NULL, NOT_FOUND); /* retry: still missing */
	fake_add_reply(&F, 200, NULL, IMG_OK);	  /* restored */
	struct journal *j = jopen();
	uint64_t seq = begin_replace(j, "x.png", "OLDBYTES");
	ck_assert_int_eq(journal_start(j), 0);
	journal_defer(j, seq);
	ck_assert_int_eq(journal_wait(j, 20000, NULL), 0);
	ck_assert_int_eq(pins(), 0);
	ck_assert_int_eq(count_files(jdir, JOURNAL_SUFFIX), 0);
	journal_close(j);
}
END_TEST

/* ---- the write-back log (journal_log.c) ---- */

/* A write-back upload of TEXT under id, staged as fs_writeback.c stages it. */
static uint64_t begin_upload(struct journal *j, const char *id, const char *text)
{
	int fd;
	char *path;
	ck_assert_int_eq(cache_stage_open(C, &fd, &path), 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	struct journal_intent in = {.op = JOURNAL_UPLOAD,
				    .id = id,
				    .old_fd = -1,
				    .new_fd = fd,
				    .new_path = &path,
				    .filename = id};
	uint64_t seq = 0;
	ck_assert_int_eq(journal_begin(j, &in, &seq), 0);
	ck_assert_ptr_null(path); /* taken over as the working copy, not copied */
	close(fd);
	return seq;
}

static void expect_upload_bytes(struct journal *j, const char *id, const char *text)
{
	int fd;
	uint64_t size;
	char buf[64] = {0};
	ck_assert_int_eq(journal_upload_fd(j, id, &fd, &size), 0);
	ck_assert_uint_eq(size, strlen(text));
	ck_assert_int_eq(pread(fd, buf, sizeof(buf) - 1, 0), (ssize_t)strlen(text));
	ck_assert_str_eq(buf, text);
	close(fd);
}

/* One log record per upload, no per-entry file; after a crash that lost the working copies
 * (never fsync'd), the log alone gives every pending upload its bytes back. */
START_TEST(test_log_replay_rebuilds)
{
	struct journal *j = jopen();
	begin_upload(j, "a.png", "AAAA");
	uint64_t seq = begin_upload(j, "b/c.png", "BBBBBB");
	ck_assert_int_eq(count_files(jdir, JOURNAL_SUFFIX), 0);
	ck_assert_int_eq(count_files(jdir, ".log"), 1);
	ck_assert_int_eq(pins(), 2);
	expect_upload_bytes(j, "b/c.png", "BBBBBB");
	journal_close(j); /* as if killed */
	char pin[64];
	snprintf(pin, sizeof(pin), "journal-%016llx-new", (unsigned long long)seq);
	ck_assert_int_eq(cache_unpin(C, pin), 0);
	snprintf(pin, sizeof(pin), "journal-%016llx-new", (unsigned long long)seq - 1);
	ck_assert_int_eq(cache_unpin(C, pin), 0);
	ck_assert_int_eq(pins(), 0);
	j = jopen();
	ck_assert_uint_eq(journal_pending_uploads(j), 2);
	ck_assert_int_eq(pins(), 2);
	expect_upload_bytes(j, "a.png", "AAAA");
	expect_upload_bytes(j, "b/c.png", "BBBBBB");
	ck_assert_uint_eq(begin_upload(j, "d.png", "D"), seq + 1); /* the series goes on */
	journal_close(j);
}
END_TEST

/* A finished upload is not replayed; a segment with nothing unfinished is removed. */
START_TEST(test_log_done_and_removed)
{
	struct journal *j = jopen();
	uint64_t s1 = begin_upload(j, "a.png", "AAAA");
	uint64_t s2 = begin_upload(j, "b.png", "BBBB");
	journal_finish(j, s1);
	ck_assert_int_eq(pins(), 1);
	journal_close(j);
	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 1);
	int fd;
	ck_assert_int_eq(journal_upload_fd(j, "a.png", &fd, NULL), -ENOENT);
	expect_upload_bytes(j, "b.png", "BBBB");
	journal_finish(j, s2);
	ck_assert_int_eq(pins(), 0);
	journal_close(j);
	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 0);
	ck_assert_int_eq(count_files(jdir, ".log"), 0);
	journal_close(j);
}
END_TEST

/* A record the crash cut short (never acknowledged) is ignored and cut off, and records
 * appended after it at the next open are read back. */
START_TEST(test_log_torn_tail)
{
	struct journal *j = jopen();
	begin_upload(j, "a.png", "AAAA");
	journal_close(j);
	DIR *d = opendir(jdir);
	struct dirent *de;
	char seg[600] = "";
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".log"))
			snprintf(seg, sizeof(seg), "%s/%s", jdir, de->d_name);
	closedir(d);
	struct stat st;
	ck_assert_int_eq(stat(seg, &st), 0);
	FILE *f = fopen(seg, "a");
	ck_assert_ptr_nonnull(f);
	fputs("imgsfsWB\001\000\000\000garbage", f); /* a head, then the crash */
	fclose(f);
	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 1);
	struct stat st2;
	ck_assert_int_eq(stat(seg, &st2), 0);
	ck_assert_int_eq(st2.st_size, st.st_size); /* cut back */
	uint64_t s2 = begin_upload(j, "b.png", "BBBB");
	journal_close(j);
	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 2);
	expect_upload_bytes(j, "a.png", "AAAA");
	journal_finish(j, s2);
	journal_close(j);
	/* a flipped byte in a record's bytes fails its CRC: it is not replayed as intact */
	int fd = open(seg, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "X", 1, st.st_size - 2), 1);
	close(fd);
	j = jopen();
	ck_assert_uint_eq(journal_pending(j), 0);
	journal_close(j);
}
END_TEST

/* An upload journaled by an earlier version (an .intent file and a durable pin) is still
 * replayed, and finishing it removes its file. */
START_TEST(test_log_old_intent_upload)
{
	char p[400];
	snprintf(p, sizeof(p), "%s", jdir);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/0000000000000007" JOURNAL_SUFFIX, jdir);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("imagesfs-intent 1\nop upload\nid o.png\nsrc -\nold_version 0\npin -\n"
	      "newpin journal-0000000000000007-new\nmeta -\ncreator -\nfilename o.png\n"
	      "rsu 0\nend\n",
	      f);
	fclose(f);
	int fd = bytes_fd("OLDFORMAT");
	ck_assert_int_eq(cache_pin(C, "journal-0000000000000007-new", fd, NULL), 0);
	close(fd);
	struct journal *j = jopen();
	ck_assert_uint_eq(journal_pending_uploads(j), 1);
	expect_upload_bytes(j, "o.png", "OLDFORMAT");
	journal_finish(j, 7);
	ck_assert_int_eq(access(p, F_OK), -1);
	ck_assert_int_eq(pins(), 0);
	ck_assert_uint_eq(begin_upload(j, "n.png", "N"), 8);
	journal_close(j);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("journal");
	TCase *tc = tcase_create("records");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_begin_finish_pins);
	tcase_add_test(tc, test_replay_after_crash);
	tcase_add_test(tc, test_damaged_keeps_bytes);
	tcase_add_test(tc, test_pins_not_evicted);
	tcase_add_test(tc, test_settle_replace_restores);
	tcase_add_test(tc, test_settle_replace_present);
	tcase_add_test(tc, test_settle_unreachable_keeps);
	tcase_add_test(tc, test_settle_abandon);
	tcase_add_test(tc, test_settle_rename);
	tcase_add_test(tc, test_settle_rename_committed);
	tcase_add_test(tc, test_upload_metas);
	tcase_add_test(tc, test_background_retries);
	tcase_add_test(tc, test_log_replay_rebuilds);
	tcase_add_test(tc, test_log_done_and_removed);
	tcase_add_test(tc, test_log_torn_tail);
	tcase_add_test(tc, test_log_old_intent_upload);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

/*
 * cmd_status.c - `imagesfs status [--watch] MOUNT`: MOUNT/.imagesfs/status as a table, or
 * one progress line a second.
 *
 * The status document is read whole each time (one open = one snapshot the mount made) and
 * parsed with json-c; a field the document lacks reads as 0, so an older or newer mount
 * still prints. --watch redraws the line in place on a terminal (\r, erase to end of line)
 * and prints plain lines otherwise (a log, a pipe); it ends on SIGINT/SIGTERM, or with
 * exit status 1 when the mount goes away.
 */
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t status_stop;

static void status_on_signal(int sig)
{
	(void)sig;
	status_stop = 1;
}

/* The member at a dotted path ("uploads.done"), or NULL. Borrowed from doc. */
static json_object *jget(json_object *doc, const char *path)
{
	char key[64];
	json_object *o = doc;
	while (o && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		if (!json_object_object_get_ex(o, key, &o))
			return NULL;
		path += n + (path[n] == '.');
	}
	return o;
}

static double jnum(json_object *doc, const char *path)
{
	json_object *o = jget(doc, path);
	return o ? json_object_get_double(o) : 0;
}

static const char *jstr(json_object *doc, const char *path)
{
	json_object *o = jget(doc, path);
	return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

/* 1 when the member is missing or null. */
static int jnull(json_object *doc, const char *path)
{
	json_object *o = jget(doc, path);
	return !o || json_object_is_type(o, json_type_null);
}

/* Reads and parses the status; NULL after printing why (cli_ctl_read prints its own). */
static json_object *status_load(const char *mount)
{
	char *text;
	size_t len;
	if (cli_ctl_read(mount, "status", &text, &len) < 0)
		return NULL;
	json_object *doc = json_tokener_parse(text);
	free(text);
	if (!doc || !json_object_is_type(doc, json_type_object)) {
		fprintf(stderr, "imagesfs: '%s/%s/status' is not a status document\n", mount,
			CLI_CTL_DIR);
		json_object_put(doc);
		return NULL;
	}
	return doc;
}

static void human_bytes(double b, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

static void print_counts(json_object *obj, const char *label)
{
	int any = 0;
	printf("  %-10s", label);
	if (obj && json_object_is_type(obj, json_type_object)) {
		json_object_object_foreach(obj, k, v)
		{
			if (json_object_get_int64(v) == 0)
				continue;
			printf(" %s %lld", k, (long long)json_object_get_int64(v));
			any = 1;
		}
	}
	printf("%s\n", any ? "" : " none");
}

static void print_listing(json_object *doc, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "listings.%s.age_s", name);
	if (jnull(doc, path)) {
		printf(" %s never listed;", name);
		return;
	}
	double age = jnum(doc, path);
	snprintf(path, sizeof(path), "listings.%s.entries", name);
	printf(" %s %.1f s old (%.0f);", name, age, jnum(doc, path));
}

static void print_table(json_object *doc, const char *mount)
{
	char up[32], down[32], used[32], cap[32];
	human_bytes(jnum(doc, "bytes.up"), up, sizeof(up));
	human_bytes(jnum(doc, "bytes.down"), down, sizeof(down));
	human_bytes(jnum(doc, "cache.bytes"), used, sizeof(used));
	human_bytes(jnum(doc, "cache.cap"), cap, sizeof(cap));
	const char *acct = jstr(doc, "options.account");
	printf("imagesfs %s at %s, account %s, up %.0f s\n", jstr(doc, "version") ?: "?", mount,
	       acct ? acct : "?", jnum(doc, "uptime_s"));
	printf("uploads     %.0f done, %.0f in flight, %.0f queued, %.0f failed\n",
	       jnum(doc, "uploads.done"), jnum(doc, "uploads.in_flight"),
	       jnum(doc, "uploads.queued"), jnum(doc, "uploads.failed"));
	printf("bytes       %s up, %s down\n", up, down);
	printf("requests    %.0f sent, %.0f retries, %.0f answered 429, %.0f waiting for budget\n",
	       jnum(doc, "requests.total"), jnum(doc, "requests.retries"),
	       jnum(doc, "requests.http_429"), jnum(doc, "requests.waiting"));
	print_counts(jget(doc, "requests.by_op"), "by op");
	print_counts(jget(doc, "requests.by_host"), "by host");
	if (jnull(doc, "budget.left"))
		printf("budget      unlimited (rate_limit=off)\n");
	else
		printf("budget      %.0f of %.0f requests left, refilling %.2f/s\n",
		       jnum(doc, "budget.left"), jnum(doc, "budget.burst"),
		       jnum(doc, "budget.per_s"));
	printf("cache       %s of %s, %.0f entries, hit rate ", used, cap,
	       jnum(doc, "cache.entries"));
	if (jnull(doc, "cache.hit_rate"))
		printf("-\n");
	else
		printf("%.0f%%\n", jnum(doc, "cache.hit_rate") * 100);
	printf("listings   ");
	print_listing(doc, "images");
	print_listing(doc, "variants");
	print_listing(doc, "keys");
	printf("\n");
	printf("journal     %.0f pending; batch tokens held %.0f\n", jnum(doc, "journal_pending"),
	       jnum(doc, "batch_tokens"));
	printf("errors      %.0f", jnum(doc, "errors"));
	printf(jnum(doc, "errors") > 0 ? " (last ones: %s/%s/errors)\n" : "\n", mount, CLI_CTL_DIR);
	printf("options     dir_ttl=%.0f", jnum(doc, "options.dir_ttl"));
	if (jstr(doc, "options.rate_limit"))
		printf(" rate_limit=%s", jstr(doc, "options.rate_limit"));
	if (jstr(doc, "options.cache_dir"))
		printf(" cache_dir=%s", jstr(doc, "options.cache_dir"));
	json_object *ro = jget(doc, "options.ro");
	printf("%s\n", ro && json_object_get_boolean(ro) ? " ro" : "");
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One progress line: uploads done/total known so far, rate, budget, errors. */
static void watch_line(json_object *doc, double rate, char *buf, size_t len)
{
	double done = jnum(doc, "uploads.done"), failed = jnum(doc, "uploads.failed");
	double total = done + failed + jnum(doc, "uploads.in_flight") + jnum(doc, "uploads.queued");
	char budget[64];
	if (jnull(doc, "budget.left"))
		snprintf(budget, sizeof(budget), "unlimited");
	else
		snprintf(budget, sizeof(budget), "%.0f/%.0f", jnum(doc, "budget.left"),
			 jnum(doc, "budget.burst"));
	snprintf(buf, len,
		 "uploads %.0f/%.0f (%.0f in flight, %.0f queued), %.1f/s, budget %s, "
		 "429s %.0f, errors %.0f",
		 done, total, jnum(doc, "uploads.in_flight"), jnum(doc, "uploads.queued"), rate,
		 budget, jnum(doc, "requests.http_429"), jnum(doc, "errors"));
}

static int watch(const char *mount)
{
	int tty = isatty(STDOUT_FILENO);
	double last_t = 0, last_done = -1, rate = 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = status_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!status_stop) {
		json_object *doc = status_load(mount);
		if (!doc) {
			if (tty)
				printf("\n");
			return 1;
		}
		double t = mono_s(), done = jnum(doc, "uploads.done");
		if (last_done >= 0 && t > last_t)
			rate = (done - last_done) / (t - last_t);
		last_t = t;
		last_done = done;
		char line[256];
		watch_line(doc, rate, line, sizeof(line));
		json_object_put(doc);
		if (tty)
			printf("\r\033[K%s", line);
		else
			printf("%s\n", line);
		fflush(stdout);
		for (int i = 0; i < 10 && !status_stop; i++)
			usleep(100000);
	}
	if (tty)
		printf("\n");
	return 0;
}

int cli_cmd_status(int argc, char **argv)
{
	int watching = 0;
	const char *mount = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--watch") || !strcmp(argv[i], "-w"))
			watching = 1;
		else if (!mount && argv[i][0] != '-')
			mount = argv[i];
		else {
			fprintf(stderr, "usage: imagesfs status [--watch] MOUNT\n");
			return 2;
		}
	}
	if (!mount) {
		fprintf(stderr, "usage: imagesfs status [--watch] MOUNT\n");
		return 2;
	}
	if (watching)
		return watch(mount);
	json_object *doc = status_load(mount);
	if (!doc)
		return 1;
	print_table(doc, mount);
	json_object_put(doc);
	return 0;
}

/*
 * imagesfs-emulator - a local, single-account Cloudflare Images API (v4 account API).
 *
 * Design note
 * -----------
 * Architecture. libmicrohttpd with an internal thread pool (epoll, keep-alive; --threads,
 * default 4) calls emu_http.c, which keeps the raw request target (URI log callback), routes
 * on the raw path split at '/' before percent-decoding each segment (ids are fully encoded,
 * "a/b" arrives as a%2Fb), checks auth first, then the account, then dispatches to one
 * handler per operation (emu_images.c, emu_upload.c, emu_keys.c, emu_variants.c). Handlers
 * build the JSON envelope directly into a byte buffer (no DOM for large lists). Delays
 * (--latency-ms, stall faults) suspend the connection and a timer thread (emu_delay.c)
 * resumes it, so waiting never occupies a pool thread. Admin endpoints live under
 * /__emulator/ (emu_admin.c); fault rules and the rate limit are in emu_faults.c.
 *
 * Store. emu_store.c: a hash table by id plus an upload-time index (sorted array of
 * (seq, image) slots with tombstones) under one rwlock. Upload times strictly increase
 * (+1 ms on ties), so new images append and a v2 continuation token (the last seq) is found
 * by binary search: a 10,000-image page costs O(log N + page). Blobs are immutable and
 * reference counted; blob GETs send them without copying and without holding the lock.
 * Counters are relaxed atomics.
 *
 * Direct uploads (emu_direct.c). POST images/v2/direct_upload stores a draft: an image record
 * in the hash table flagged draft, with an expiry and no blob, left out of the upload-time
 * index (so lists never see it) and of the counts. Its uploadURL points back at the emulator,
 * /upload/<account hash>/<id>, routed without auth; the first valid file POSTed there gives
 * the draft its blob, a new upload time and an index slot. Expired drafts are removed lazily
 * by whatever touches them (and swept when too many are pending).
 *
 * Persistence (--data DIR, emu_persist.c): account.json, keys.json, variants.json and one
 * file per image images/i-<uploaded ms in hex>.img = a JSON header line + the exact blob.
 * Without --data everything lives in memory only.
 *
 * Crash safety. Each write is temp file + fsync + rename + directory fsync, so a crash
 * leaves the old or the new version of a file (stray temp files are removed at start);
 * deletes unlink. A write snapshots the current in-memory state under a per-file shard
 * mutex, so concurrent updates cannot leave an older state on disk. A request succeeds
 * only after its file is durable (seeding skips the per-file fsync, see emu_persist.c).
 *
 * Shutdown. SIGINT/SIGTERM are taken by sigwait() in main: pending delayed replies are
 * released, the daemon is stopped and every structure is freed (ASan leak-clean).
 */
#include "emu.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_PORT 8787u
#define DEFAULT_ALLOWED 100000L
#define DEFAULT_THREADS 4u
#define MAX_THREADS 256u

static void usage(FILE *f)
{
	fprintf(f, "usage: imagesfs-emulator [--listen HOST:PORT] [--data DIR] [--account ID]\n"
		   "                         [--token TOKEN]... [--auth-key EMAIL:KEY]...\n"
		   "                         [--latency-ms N] [--allowed N] [--threads N]\n"
		   "                         [--rate-limit N/SECONDS] [--fault JSON]...\n"
		   "                         [--delivery-url BASE]\n"
		   "                         [--batch-token-ttl SECONDS] [--batch-rate N]\n"
		   "                         [--refuse-batch-tokens]\n"
		   "Prints the base URL http://HOST:PORT/client/v4 as the first stdout line when "
		   "ready.\n"
		   "Tokens may also come from IMAGESFS_EMULATOR_TOKEN, key pairs from\n"
		   "IMAGESFS_EMULATOR_AUTH_KEY=EMAIL:KEY.\n"
		   "Delivery: variants[] URLs are BASE/<hash>/<id>/<variant> (default: this\n"
		   "server's own http://HOST:PORT/cdn); BASE's path is served here (libvips).\n"
		   "See tests/emulator/README.md.\n");
}

static int add_token(struct emu *e, const char *tok)
{
	char **nt;
	size_t i;

	for (i = 0; tok[i]; i++) {
		if ((unsigned char)tok[i] <= 0x20 || tok[i] == 0x7f) {
			fprintf(stderr, "imagesfs-emulator: tokens must not contain whitespace\n");
			return -EINVAL;
		}
	}
	if (!*tok) {
		fprintf(stderr, "imagesfs-emulator: empty token\n");
		return -EINVAL;
	}
	nt = realloc(e->tokens, (e->ntokens + 1) * sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	e->tokens = nt;
	e->tokens[e->ntokens] = strdup(tok);
	if (!e->tokens[e->ntokens])
		return -ENOMEM;
	e->ntokens++;
	return 0;
}

static int add_authkey(struct emu *e, const char *spec)
{
	const char *colon = strchr(spec, ':');
	struct emu_authkey *nk;

	if (!colon || colon == spec || !colon[1]) {
		fprintf(stderr, "imagesfs-emulator: --auth-key takes EMAIL:KEY\n");
		return -EINVAL;
	}
	nk = realloc(e->authkeys, (e->nauthkeys + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	e->authkeys = nk;
	nk[e->nauthkeys].email = strndup(spec, (size_t)(colon - spec));
	nk[e->nauthkeys].key = strdup(colon + 1);
	e->nauthkeys++;
	return nk[e->nauthkeys - 1].email && nk[e->nauthkeys - 1].key ? 0 : -ENOMEM;
}

static int parse_listen(struct emu *e, const char *s)
{
	const char *colon = strrchr(s, ':');
	const char *h = s, *he;
	long port;

	if (!colon || emu_parse_long(colon + 1, 0, 65535, &port)) {
		fprintf(stderr, "imagesfs-emulator: --listen takes HOST:PORT\n");
		return -EINVAL;
	}
	he = colon;
	if (*h == '[' && he > h && he[-1] == ']') {
		h++;
		he--;
	}
	free(e->listen_host);
	e->listen_host = strndup(h, (size_t)(he - h));
	e->listen_port = (unsigned)port;
	return e->listen_host ? 0 : -ENOMEM;
}

static bool account_ok(const char *s)
{
	return emu_alnum_ok(s, strlen(s), 32);
}

/* Deterministic 22-char base64url "account hash" (delivery URLs) from the account id. */
static void account_hash(const char *acct, char out[32])
{
	unsigned char bytes[16];
	uint64_t h1 = 1469598103934665603ull, h2 = 0x9e3779b97f4a7c15ull;
	const unsigned char *p;
	int i;

	for (p = (const unsigned char *)acct; *p; p++) {
		h1 = (h1 ^ *p) * 1099511628211ull;
		h2 = (h2 ^ *p) * 0xff51afd7ed558ccdull;
		h2 ^= h2 >> 33;
	}
	for (i = 0; i < 8; i++) {
		h1 ^= h1 >> 31;
		h1 *= 0xbf58476d1ce4e5b9ull;
		h2 ^= h2 >> 29;
		h2 *= 0x94d049bb133111ebull;
		bytes[i] = (unsigned char)(h1 >> 56);
		bytes[8 + i] = (unsigned char)(h2 >> 56);
	}
	emu_base64url(bytes, sizeof(bytes), out);
}

enum {
	OPT_LISTEN = 1,
	OPT_DATA,
	OPT_ACCOUNT,
	OPT_TOKEN,
	OPT_AUTHKEY,
	OPT_LATENCY,
	OPT_ALLOWED,
	OPT_THREADS,
	OPT_RATE,
	OPT_FAULT,
	OPT_DELIVERY,
	OPT_BATCH_TTL,
	OPT_BATCH_RATE,
	OPT_BATCH_REFUSE,
	OPT_HELP
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"data", required_argument, NULL, OPT_DATA},
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"auth-key", required_argument, NULL, OPT_AUTHKEY},
    {"latency-ms", required_argument, NULL, OPT_LATENCY},
    {"allowed", required_argument, NULL, OPT_ALLOWED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"rate-limit", required_argument, NULL, OPT_RATE},
    {"fault", required_argument, NULL, OPT_FAULT},
    {"delivery-url", required_argument, NULL, OPT_DELIVERY},
    {"batch-token-ttl", required_argument, NULL, OPT_BATCH_TTL},
    {"batch-rate", required_argument, NULL, OPT_BATCH_RATE},
    {"refuse-batch-tokens", no_argument, NULL, OPT_BATCH_REFUSE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct cli {
	bool account_given;
	long rate_limit;
	long rate_window;
	long batch_ttl;
	long batch_rate;
	bool batch_refuse;
	char **faults;
	size_t nfaults;
	const char *delivery_url;
};

static int parse_one(struct emu *e, struct cli *c, int opt, const char *arg)
{
	long v;

	switch (opt) {
	case OPT_LISTEN:
		return parse_listen(e, arg);
	case OPT_DATA:
		free(e->data_dir);
		e->data_dir = strdup(arg);
		return e->data_dir ? 0 : -ENOMEM;
	case OPT_ACCOUNT:
		if (!account_ok(arg)) {
			fprintf(stderr, "imagesfs-emulator: --account must be 1-32 chars of "
					"[A-Za-z0-9]\n");
			return -EINVAL;
		}
		free(e->account);
		e->account = strdup(arg);
		c->account_given = true;
		return e->account ? 0 : -ENOMEM;
	case OPT_TOKEN:
		return add_token(e, arg);
	case OPT_AUTHKEY:
		return add_authkey(e, arg);
	case OPT_LATENCY:
		return emu_parse_long(arg, 0, 600000, &e->latency_ms) ? -EINVAL : 0;
	case OPT_ALLOWED:
		return emu_parse_long(arg, 0, 100000000L, &e->allowed) ? -EINVAL : 0;
	case OPT_THREADS:
		if (emu_parse_long(arg, 1, MAX_THREADS, &v))
			return -EINVAL;
		e->threads = (unsigned)v;
		return 0;
	case OPT_RATE:
		return emu_faults_parse_rate(arg, &c->rate_limit, &c->rate_window);
	case OPT_BATCH_TTL:
		return emu_parse_long(arg, 1, 86400L * 30, &c->batch_ttl) ? -EINVAL : 0;
	case OPT_BATCH_RATE:
		return emu_parse_long(arg, 0, 1000000L, &c->batch_rate) ? -EINVAL : 0;
	case OPT_BATCH_REFUSE:
		c->batch_refuse = true;
		return 0;
	case OPT_FAULT: {
		char **nf = realloc(c->faults, (c->nfaults + 1) * sizeof(*nf));

		if (!nf)
			return -ENOMEM;
		c->faults = nf;
		c->faults[c->nfaults++] = (char *)arg;
		return 0;
	}
	case OPT_DELIVERY:
		c->delivery_url = arg;
		return 0;
	default:
		return -EINVAL;
	}
}

static int parse_args(struct emu *e, struct cli *c, int argc, char **argv)
{
	const char *env;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		if (opt == OPT_HELP) {
			usage(stdout);
			exit(0);
		}
		rc = opt == '?' ? -EINVAL : parse_one(e, c, opt, optarg);
		if (rc) {
			if (opt != '?')
				fprintf(stderr, "imagesfs-emulator: invalid value for --%s\n",
					long_opts[opt - 1].name);
			usage(stderr);
			return rc;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "imagesfs-emulator: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	env = getenv("IMAGESFS_EMULATOR_TOKEN");
	if (env && *env && add_token(e, env))
		return -EINVAL;
	env = getenv("IMAGESFS_EMULATOR_AUTH_KEY");
	if (env && *env && add_authkey(e, env))
		return -EINVAL;
	if (e->ntokens == 0) {
		fprintf(stderr, "imagesfs-emulator: no token configured, accepting the built-in "
				"demo token (see README)\n");
		return add_token(e, EMU_DEFAULT_TOKEN);
	}
	return 0;
}

static void emu_free(struct emu *e)
{
	size_t i;

	for (i = 0; i < e->ntokens; i++)
		free(e->tokens[i]);
	free(e->tokens);
	for (i = 0; i < e->nauthkeys; i++) {
		free(e->authkeys[i].email);
		free(e->authkeys[i].key);
	}
	free(e->authkeys);
	free(e->account);
	free(e->data_dir);
	free(e->listen_host);
}

/* Opens the data dir and loads every module's state. Unwinds on failure. */
static int setup_state(struct emu *e, const struct cli *c)
{
	char err[256];
	size_t i;
	int rc;

	if (e->data_dir) {
		rc = emu_persist_open(e->data_dir, &e->account, c->account_given, &e->persist);
		if (rc)
			return rc;
	}
	account_hash(e->account, e->account_hash);
	rc = emu_store_init(&e->store, e->allowed);
	if (rc)
		goto err_persist;
	e->store.persist = e->persist;
	if (e->persist && (rc = emu_persist_load_images(e->persist, &e->store)))
		goto err_store;
	if ((rc = emu_keys_init(&e->keys, e->persist)))
		goto err_store;
	if ((rc = emu_variants_init(&e->variants, e->persist)))
		goto err_keys;
	if ((rc = emu_delivery_init(&e->delivery, c->delivery_url)))
		goto err_delivery;
	if ((rc = emu_faults_init(&e->faults)))
		goto err_delivery;
	if (c->rate_limit)
		emu_faults_set_rate(&e->faults, c->rate_limit, c->rate_window);
	if ((rc = emu_batch_init(&e->batch)))
		goto err_faults;
	if (c->batch_ttl)
		e->batch.ttl_s = c->batch_ttl;
	if (c->batch_rate >= 0)
		e->batch.rate = c->batch_rate;
	e->batch.refuse = c->batch_refuse;
	for (i = 0; i < c->nfaults; i++) {
		rc = emu_faults_add_spec(&e->faults, c->faults[i], err, sizeof(err));
		if (rc) {
			fprintf(stderr, "imagesfs-emulator: bad --fault: %s\n", err);
			goto err_batch;
		}
	}
	return 0;
err_batch:
	emu_batch_release(&e->batch);
err_faults:
	emu_faults_release(&e->faults);
err_delivery:
	emu_delivery_release(&e->delivery); /* also after a partial init */
	emu_variants_release(&e->variants);
err_keys:
	emu_keys_release(&e->keys);
err_store:
	emu_store_release(&e->store);
err_persist:
	emu_persist_close(e->persist);
	return rc;
}

static void teardown_state(struct emu *e)
{
	emu_batch_release(&e->batch);
	emu_faults_release(&e->faults);
	emu_delivery_release(&e->delivery);
	emu_variants_release(&e->variants);
	emu_keys_release(&e->keys);
	emu_store_release(&e->store);
	emu_persist_close(e->persist);
}

static void print_ready(const struct emu *e)
{
	bool v6 = strchr(e->listen_host, ':') != NULL;

	fprintf(stdout, "http://%s%s%s:%u/client/v4\n", v6 ? "[" : "", e->listen_host,
		v6 ? "]" : "", e->listen_port);
	fflush(stdout);
	fprintf(stderr, "imagesfs-emulator: serving account %s (%zu images)%s\n", e->account,
		emu_store_count((struct emu_store *)&e->store),
		e->persist ? " with persistence" : "");
}

int main(int argc, char **argv)
{
	struct emu e = {0};
	struct cli c = {.batch_rate = -1};
	sigset_t set;
	int sig = 0, rc = 1;

	e.allowed = DEFAULT_ALLOWED;
	e.threads = DEFAULT_THREADS;
	e.listen_host = strdup(DEFAULT_LISTEN_HOST);
	e.listen_port = DEFAULT_PORT;
	e.account = strdup(EMU_DEFAULT_ACCOUNT);
	if (!e.listen_host || !e.account || parse_args(&e, &c, argc, argv))
		goto out;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits the mask */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		goto out;
	if (emu_render_init(argv[0])) {
		fprintf(stderr, "imagesfs-emulator: cannot initialise libvips\n");
		goto out_curl;
	}
	if (setup_state(&e, &c))
		goto out_vips;
	if (emu_delay_start(&e.delay) || emu_http_start(&e)) {
		emu_delay_stop(&e.delay);
		emu_delay_release(&e.delay);
		goto out_state;
	}
	print_ready(&e);
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(stderr, "imagesfs-emulator: signal %d, shutting down\n", sig);
	emu_http_stop(&e);
	rc = 0;
out_state:
	teardown_state(&e);
out_vips:
	emu_render_shutdown();
out_curl:
	curl_global_cleanup();
out:
	free(c.faults);
	emu_free(&e);
	return rc;
}

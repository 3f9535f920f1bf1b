/*
 * main.c - mount.imagesfs: options, credentials, the account check, session setup.
 *
 *   mount.imagesfs ACCOUNT_ID MOUNTPOINT [-o opt[,opt...]] [-f] [-d]
 *
 * The argument order is mount(8)'s helper order, so /etc/fstab entries of type imagesfs
 * work. Secrets never travel in argv: the token comes from the environment or from a
 * credentials file that only its owner can read; an option that looks like a secret is
 * refused. Everything that can fail is checked before mounting (credentials, account,
 * cache directory), so a failed mount exits non-zero at once with one clear line.
 */
#include "fs.h"
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FS_DEFAULT_API_URL "https://api.cloudflare.com/client/v4"
#define FS_DEFAULT_BATCH_URL "https://batch.imagedelivery.net"
#define FS_CRED_FILE_MAX 8192

enum {
	KEY_FG,
	KEY_DEBUG,
	KEY_RO,
	KEY_ALLOW_OTHER,
	KEY_DISCARD,
	KEY_SECRET,
	KEY_HELP,
	KEY_VERSION,
};

#define OPT(t, p)                                                                                  \
	{                                                                                          \
		t, offsetof(struct fs_config, p), 1                                                \
	}
static const struct fuse_opt fs_opt_table[] = {
    OPT("api_url=%s", api_url),
    OPT("cache_dir=%s", cache_dir),
    OPT("cache_size=%s", cache_size),
    OPT("dir_ttl=%d", dir_ttl),
    OPT("credentials=%s", credentials),
    OPT("ca_file=%s", ca_file),
    OPT("rate_limit=%s", rate_limit),
    OPT("umask=%s", umask_str),
    OPT("log_file=%s", log_file),
    OPT("timeout=%d", timeout_s),
    OPT("batch=%s", batch),
    OPT("batch_url=%s", batch_url),
    OPT("batch_tokens=%d", batch_tokens),
    OPT("stamp=%s", stamp_str),
    OPT("uid=%d", uid),
    OPT("gid=%d", gid),
    OPT("writeback", writeback),
    OPT("sign_key=%s", sign_key),
    OPT("url_ttl=%d", url_ttl),
    OPT("delivery_url=%s", delivery_url),
    FUSE_OPT_KEY("-f", KEY_FG),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    /* mount(8)-only options: meaningless to a FUSE daemon */
    FUSE_OPT_KEY("rw", KEY_DISCARD),
    FUSE_OPT_KEY("defaults", KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", KEY_DISCARD),
    FUSE_OPT_KEY("nofail", KEY_DISCARD),
    FUSE_OPT_KEY("noauto", KEY_DISCARD),
    FUSE_OPT_KEY("auto", KEY_DISCARD),
    FUSE_OPT_KEY("user", KEY_DISCARD),
    FUSE_OPT_KEY("users", KEY_DISCARD),
    FUSE_OPT_KEY("nouser", KEY_DISCARD),
    FUSE_OPT_KEY("nodev", KEY_DISCARD),
    FUSE_OPT_KEY("dev", KEY_DISCARD),
    FUSE_OPT_KEY("nosuid", KEY_DISCARD),
    FUSE_OPT_KEY("suid", KEY_DISCARD),
    FUSE_OPT_KEY("exec", KEY_DISCARD),
    FUSE_OPT_KEY("noexec", KEY_DISCARD),
    FUSE_OPT_KEY("noatime", KEY_DISCARD),
    FUSE_OPT_KEY("atime", KEY_DISCARD),
    FUSE_OPT_KEY("relatime", KEY_DISCARD),
    FUSE_OPT_KEY("x-systemd.", KEY_DISCARD),
    /* secrets never go in argv (visible in ps, shell history, fstab) */
    FUSE_OPT_KEY("token=", KEY_SECRET),
    FUSE_OPT_KEY("api_token=", KEY_SECRET),
    FUSE_OPT_KEY("key=", KEY_SECRET),
    FUSE_OPT_KEY("api_key=", KEY_SECRET),
    FUSE_OPT_KEY("auth_key=", KEY_SECRET),
    FUSE_OPT_KEY("password=", KEY_SECRET),
    FUSE_OPT_KEY("secret=", KEY_SECRET),
    FUSE_OPT_END,
};

struct fs_creds {
	char *token, *email, *key;
};

static void usage(void)
{
	printf(
	    "usage: mount.imagesfs ACCOUNT_ID MOUNTPOINT [-o opt[,opt...]] [-f] [-d]\n"
	    "\n"
	    "Credentials (never on the command line):\n"
	    "  CLOUDFLARE_API_TOKEN, or CLOUDFLARE_API_KEY + CLOUDFLARE_EMAIL in the environment,\n"
	    "  or -o credentials=FILE (mode 0600 or stricter): the token on the first line, or\n"
	    "  lines token=..., or email=... and key=...\n"
	    "\n"
	    "Options:\n"
	    "  credentials=FILE   read the credentials from FILE (see above)\n"
	    "  api_url=URL        API base (default " FS_DEFAULT_API_URL
	    "; env CLOUDFLARE_BASE_URL)\n"
	    "  cache_dir=DIR      blob cache (default $XDG_CACHE_HOME/imagesfs/ACCOUNT)\n"
	    "  cache_size=SIZE    cache cap, K/M/G suffixes (default 1G)\n"
	    "  dir_ttl=SECONDS    how long a listing is trusted (default 60)\n"
	    "  ca_file=FILE       CA bundle for https\n"
	    "  rate_limit=N/SECS  client-side budget: at most N requests in any SECS seconds\n"
	    "                     (default 1200/300, the API's limit); or requests/second; or off\n"
	    "  log_file=PATH      write log lines to PATH (0600) instead of syslog/stderr\n"
	    "  timeout=SECONDS    an unresponsive server fails an operation after about this\n"
	    "                     long, retries included (default 30)\n"
	    "  sign_key=NAME      signing key for private images' URLs in user.variants and\n"
	    "                     renditions/ (default: the key named default, else the first)\n"
	    "  url_ttl=SECONDS    how long a signed URL stays valid (default 86400)\n"
	    "  delivery_url=URL   where renditions/ are fetched (default " FS_DEFAULT_DELIVERY_URL
	    ")\n"
	    "  batch=on|off       send uploads, image details, edits, deletes and listings\n"
	    "                     through the Images batch API, outside the global limit\n"
	    "                     (default on; falls back to the global API, logged once)\n"
	    "  batch_url=URL      batch host (default " FS_DEFAULT_BATCH_URL ";\n"
	    "                     with another api_url: that URL's scheme://host:port)\n"
	    "  batch_tokens=N     batch tokens used at once, 200 requests/s each (default 2)\n"
	    "  stamp=on|off       store mtimes and sizes in a reserved key of each image's\n"
	    "                     metadata (default on); off: they stay in this mount's memory\n"
	    "  writeback          close() returns once the bytes are journaled on local disk;\n"
	    "                     uploads run in the background (`imagesfs sync MOUNT` waits)\n"
	    "  ro, allow_other, uid=N, gid=N, umask=OCTAL, and FUSE options\n"
	    "  -f                 stay in the foreground (log to stderr)\n"
	    "  -d                 debug log (implies -f)\n"
	    "\n"
	    "Upload from a URL (the API fetches it; http:// and https:// only):\n"
	    "  setfattr -n user.url -v URL MOUNTPOINT/images/NAME   (after touch for a new NAME)\n"
	    "  imagesfs import URL MOUNTPOINT/images/NAME\n");
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct fs_config *cfg = data;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!cfg->account)
			return (cfg->account = strdup(arg)) ? 0 : -1;
		if (!cfg->mountpoint)
			return (cfg->mountpoint = strdup(arg)) ? 0 : -1;
		fprintf(stderr, "mount.imagesfs: unexpected argument '%s'\n", arg);
		return -1;
	case KEY_FG:
		cfg->foreground = 1;
		return 0;
	case KEY_DEBUG:
		cfg->foreground = cfg->debug = 1;
		return 0;
	case KEY_RO:
		cfg->ro = 1;
		return 1;
	case KEY_ALLOW_OTHER:
		cfg->allow_other = 1;
		return 1;
	case KEY_DISCARD:
		return 0;
	case KEY_SECRET: {
		const char *eq = strchr(arg, '=');
		fprintf(stderr,
			"mount.imagesfs: refusing option '%.*s=...': secrets are never passed as "
			"options; set CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_KEY and "
			"CLOUDFLARE_EMAIL) or use -o credentials=FILE\n",
			(int)(eq ? eq - arg : 0), arg);
		return -1;
	}
	case KEY_HELP:
		usage();
		exit(0);
	case KEY_VERSION:
		printf("mount.imagesfs 0.1.0 (libfuse %d)\n", fuse_version());
		exit(0);
	default:
		return 1; /* FUSE's own options */
	}
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	uint64_t mul = 1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

/* ---- credentials ------------------------------------------------------------------ */

static void creds_free(struct fs_creds *c)
{
	char **f[] = {&c->token, &c->email, &c->key};
	for (size_t i = 0; i < 3; i++) {
		if (*f[i]) {
			explicit_bzero(*f[i], strlen(*f[i]));
			free(*f[i]);
			*f[i] = NULL;
		}
	}
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t l = strlen(s);
	while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r' || s[l - 1] == '\n'))
		s[--l] = '\0';
	return s;
}

static int creds_parse(char *text, struct fs_creds *c)
{
	int first = 1;
	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		char *l = trim(line);
		if (!*l || *l == '#')
			continue;
		char **slot = NULL;
		if (strncmp(l, "token=", 6) == 0)
			slot = &c->token, l += 6;
		else if (strncmp(l, "email=", 6) == 0)
			slot = &c->email, l += 6;
		else if (strncmp(l, "key=", 4) == 0)
			slot = &c->key, l += 4;
		else if (first)
			slot = &c->token;
		first = 0;
		if (slot) {
			free(*slot);
			if (!(*slot = strdup(trim(l))))
				return -ENOMEM;
		}
	}
	return c->token || (c->email && c->key) ? 0 : -EINVAL;
}

static int creds_from_file(const char *file, struct fs_creds *c)
{
	char buf[FS_CRED_FILE_MAX + 1];
	struct stat st;
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "mount.imagesfs: cannot open credentials file '%s': %s\n", file,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		fprintf(stderr,
			"mount.imagesfs: credentials file '%s' is readable by group or "
			"others (mode %o); chmod 600 it\n",
			file, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	ssize_t n = read(fd, buf, FS_CRED_FILE_MAX);
	close(fd);
	if (n < 0) {
		fprintf(stderr, "mount.imagesfs: cannot read credentials file '%s': %s\n", file,
			strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	int rc = creds_parse(buf, c);
	explicit_bzero(buf, sizeof(buf));
	if (rc < 0) {
		fprintf(stderr,
			"mount.imagesfs: credentials file '%s' holds no token (first line, "
			"or token=...) and no email=... + key=... pair\n",
			file);
		creds_free(c);
		return -1;
	}
	return 0;
}

static int creds_load(const struct fs_config *cfg, struct fs_creds *c)
{
	memset(c, 0, sizeof(*c));
	if (cfg->credentials)
		return creds_from_file(cfg->credentials, c);
	const char *t = getenv("CLOUDFLARE_API_TOKEN");
	const char *k = getenv("CLOUDFLARE_API_KEY"), *e = getenv("CLOUDFLARE_EMAIL");
	if (t && *t)
		c->token = strdup(t);
	else if (k && *k && e && *e) {
		c->key = strdup(k);
		c->email = strdup(e);
	} else {
		fprintf(stderr,
			"mount.imagesfs: no credentials: set CLOUDFLARE_API_TOKEN (or "
			"CLOUDFLARE_API_KEY and CLOUDFLARE_EMAIL), or use -o credentials=FILE\n");
		return -1;
	}
	return c->token || c->key ? 0 : -1;
}

/* ---- configuration -------------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int cache_dir_resolve(struct fs_config *cfg)
{
	char buf[PATH_MAX];
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	if (!cfg->cache_dir) {
		if (xdg && *xdg == '/')
			snprintf(buf, sizeof(buf), "%s/imagesfs/%s", xdg, cfg->account);
		else
			snprintf(buf, sizeof(buf), "%s/.cache/imagesfs/%s", home ? home : "/root",
				 cfg->account);
		if (!(cfg->cache_dir = strdup(buf)))
			return -ENOMEM;
	}
	if (cfg->cache_dir[0] != '/') { /* the daemon runs in "/" */
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		if (snprintf(buf, sizeof(buf), "%s/%s", cwd, cfg->cache_dir) >= (int)sizeof(buf))
			return -ENAMETOOLONG;
		free(cfg->cache_dir);
		if (!(cfg->cache_dir = strdup(buf)))
			return -ENOMEM;
	}
	return mkdir_p(cfg->cache_dir);
}

/* rate_limit=N/S: at most N requests in any S seconds. A token bucket of size b and rate r
 * sends at most b + r*S in S seconds, so b = max(1, N/10) and r = (N - b) / S.
 * rate_limit=R: R requests per second with a one-second burst. "off" or 0 disables it. */
static int parse_rate(const char *s, double *rate, int *burst)
{
	char *end;
	double n, secs = 0;

	if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0) {
		*rate = -1;
		*burst = 0;
		return 0;
	}
	errno = 0;
	n = strtod(s, &end);
	if (end == s || errno || !(n > 0) || n > 1e6)
		return -1;
	if (*end == '/') {
		const char *p = end + 1;
		secs = strtod(p, &end);
		if (end == p || !(secs > 0) || secs > 86400 || n < 1)
			return -1;
	}
	if (*end)
		return -1;
	if (secs > 0) {
		*burst = n >= 10 ? (int)(n / 10) : 1;
		*rate = (n - *burst) / secs;
		if (!(*rate > 0))
			*rate = n / secs / 2; /* tiny budgets: stay well inside */
	} else {
		*rate = n;
		*burst = n >= 1 ? (int)n : 1;
	}
	return 0;
}

/* sign_key=, url_ttl=, delivery_url= (defaults filled in). */
static int delivery_check(struct fs_config *cfg)
{
	if (cfg->url_ttl < 1 || cfg->url_ttl > 365 * 86400) {
		fprintf(stderr, "mount.imagesfs: bad url_ttl %d (want 1..31536000 seconds)\n",
			cfg->url_ttl);
		return -1;
	}
	if (cfg->sign_key && (!*cfg->sign_key || strlen(cfg->sign_key) > API_MAX_KEY_NAME_LEN)) {
		fprintf(stderr, "mount.imagesfs: bad sign_key '%s' (a key name, 1-%d chars)\n",
			cfg->sign_key, API_MAX_KEY_NAME_LEN);
		return -1;
	}
	if (!cfg->delivery_url && !(cfg->delivery_url = strdup(FS_DEFAULT_DELIVERY_URL)))
		return -1;
	size_t n = strlen(cfg->delivery_url);
	while (n > 0 && cfg->delivery_url[n - 1] == '/')
		cfg->delivery_url[--n] = '\0';
	if ((strncmp(cfg->delivery_url, "https://", 8) &&
	     strncmp(cfg->delivery_url, "http://", 7)) ||
	    n > 1024 || strchr(cfg->delivery_url, '?')) {
		fprintf(stderr,
			"mount.imagesfs: bad delivery_url '%s' (want http(s)://HOST[/PATH])\n",
			cfg->delivery_url);
		return -1;
	}
	return 0;
}

/* batch=, batch_url=, batch_tokens=. Without batch_url, Cloudflare's API gets Cloudflare's
 * batch host and any other api_url (an emulator, a proxy) its own scheme://host:port, where
 * the emulator serves the batch routes. Leaves cfg->batch_url NULL when batch=off. */
static int batch_check(struct fs_config *cfg)
{
	if (cfg->batch && strcmp(cfg->batch, "on") != 0 && strcmp(cfg->batch, "off") != 0) {
		fprintf(stderr, "mount.imagesfs: bad batch '%s' (want on or off)\n", cfg->batch);
		return -1;
	}
	if (cfg->batch_tokens < 0 || cfg->batch_tokens > 16) {
		fprintf(stderr, "mount.imagesfs: bad batch_tokens %d (want 1..16)\n",
			cfg->batch_tokens);
		return -1;
	}
	if (cfg->batch && strcmp(cfg->batch, "off") == 0) {
		free(cfg->batch_url);
		cfg->batch_url = NULL;
		return 0;
	}
	if (cfg->batch_url) {
		if (strncmp(cfg->batch_url, "http://", 7) && strncmp(cfg->batch_url, "https://", 8)) {
			fprintf(stderr, "mount.imagesfs: bad batch_url '%s' (want http(s)://...)\n",
				cfg->batch_url);
			return -1;
		}
		return 0;
	}
	const char *u = cfg->api_url, *host = strstr(u, "://");
	if (strcmp(u, FS_DEFAULT_API_URL) == 0 || !host) {
		cfg->batch_url = strdup(FS_DEFAULT_BATCH_URL);
	} else {
		const char *end = strchr(host + 3, '/');
		cfg->batch_url = strndup(u, end ? (size_t)(end - u) : strlen(u));
	}
	return cfg->batch_url ? 0 : -1;
}

static int config_check(struct fs_ctx *fs, uint64_t *cache_bytes, double *rate)
{
	struct fs_config *cfg = &fs->cfg;
	if (!cfg->account || !cfg->mountpoint) {
		usage();
		return -1;
	}
	if (!*cfg->account || strlen(cfg->account) > 32) {
		fprintf(stderr, "mount.imagesfs: '%s' is not an account id (1-32 characters)\n",
			cfg->account);
		return -1;
	}
	*cache_bytes = 1ull << 30;
	if (cfg->cache_size && parse_size(cfg->cache_size, cache_bytes) < 0) {
		fprintf(stderr, "mount.imagesfs: bad cache_size '%s' (e.g. 512M, 2G)\n",
			cfg->cache_size);
		return -1;
	}
	if (cfg->dir_ttl < 0) {
		fprintf(stderr, "mount.imagesfs: dir_ttl must be >= 0\n");
		return -1;
	}
	if (delivery_check(cfg) < 0)
		return -1;
	if (cfg->umask_str) {
		char *end;
		long m = strtol(cfg->umask_str, &end, 8);
		if (*end || end == cfg->umask_str || m < 0 || m > 0777) {
			fprintf(stderr, "mount.imagesfs: bad umask '%s' (octal)\n", cfg->umask_str);
			return -1;
		}
		fs->umask = (mode_t)m;
	}
	if (cfg->timeout_s < 0 || cfg->timeout_s > 3600) {
		fprintf(stderr, "mount.imagesfs: bad timeout %d (want 1..3600 seconds)\n",
			cfg->timeout_s);
		return -1;
	}
	*rate = 0;
	if (cfg->stamp_str && strcmp(cfg->stamp_str, "on") && strcmp(cfg->stamp_str, "off")) {
		fprintf(stderr, "mount.imagesfs: bad stamp '%s' (on or off)\n", cfg->stamp_str);
		return -1;
	}
	cfg->stamp_off = cfg->stamp_str && strcmp(cfg->stamp_str, "off") == 0;
	if (cfg->rate_limit && parse_rate(cfg->rate_limit, rate, &cfg->rate_burst) < 0) {
		fprintf(stderr,
			"mount.imagesfs: bad rate_limit '%s' (want N/SECONDS, e.g. 1200/300, "
			"requests per second, or off)\n",
			cfg->rate_limit);
		return -1;
	}
	if (!cfg->api_url) {
		const char *env = getenv("CLOUDFLARE_BASE_URL");
		cfg->api_url = strdup(env && *env ? env : FS_DEFAULT_API_URL);
	}
	if (batch_check(cfg) < 0)
		return -1;
	fs->uid = cfg->uid >= 0 ? (uid_t)cfg->uid : getuid();
	fs->gid = cfg->gid >= 0 ? (gid_t)cfg->gid : getgid();
	fs->ttl = cfg->dir_ttl;
	if (cache_dir_resolve(cfg) < 0) {
		fprintf(stderr, "mount.imagesfs: cannot create cache directory '%s': %s\n",
			cfg->cache_dir ? cfg->cache_dir : "?", strerror(errno));
		return -1;
	}
	return 0;
}

/* One-line notices from api/ (the batch API given up, and why). */
static void api_log_line(void *arg, const char *line)
{
	(void)arg;
	fs_log(FS_LOG_WARN, "%s", line);
}

static int api_open(struct fs_ctx *fs, const struct fs_creds *c, double rate)
{
	struct api_config ac = {
	    .base_url = fs->cfg.api_url,
	    .account_id = fs->cfg.account,
	    .token = c->token,
	    .auth_email = c->email,
	    .auth_key = c->key,
	    .ca_file = fs->cfg.ca_file,
	    .rate_per_sec = rate,
	    .rate_burst = fs->cfg.rate_burst,
	    /* timeout=T bounds a stalled transfer and the retrying of one call; 0 = defaults */
	    .low_speed_time_s = fs->cfg.timeout_s,
	    .retry_budget_ms = fs->cfg.timeout_s * 1000L,
	    .connect_timeout_ms = fs->cfg.timeout_s > 0 && fs->cfg.timeout_s < 10
				      ? fs->cfg.timeout_s * 1000L
				      : 0,
	    .verbose = fs->cfg.debug,
	    .user_agent = "imagesfs/0.1.0",
	    .batch_url = fs->cfg.batch_url,
	    .batch_tokens = fs->cfg.batch_tokens,
	    .log_fn = api_log_line,
	};
	return api_client_new(&ac, &fs->api);
}

/* Checks credentials and account with one stats call; prints the one-line reason. */
static int account_check(struct fs_ctx *fs)
{
	struct api_stats st;
	struct api_err err;
	char buf[384];
	int rc = api_stats_get(fs->api, &st, &err);
	if (rc < 0) {
		fprintf(stderr, "mount.imagesfs: cannot access account '%s' at %s: %s\n",
			fs->cfg.account, fs->cfg.api_url, api_err_str(&err, buf, sizeof(buf)));
		return -1;
	}
	fs->statfs_cache = st; /* bounds the images listing (fs_list.c); statfs_ms stays 0 */
	return 0;
}

static int cache_open_cfg(struct fs_ctx *fs, uint64_t bytes)
{
	struct cache_config cc = {.dir = fs->cfg.cache_dir, .max_bytes = bytes};
	int rc = cache_open(&cc, &fs->cache);
	if (rc < 0)
		fs_log(FS_LOG_ERR, "cannot open cache '%s': %s", fs->cfg.cache_dir, strerror(-rc));
	return rc;
}

static void journal_log(int level, const char *msg)
{
	static const int map[] = {FS_LOG_ERR, FS_LOG_WARN, FS_LOG_INFO, FS_LOG_DEBUG};
	fs_log(map[level < 0 ? 0 : level > 3 ? 3 : level], "%s", msg);
}

/* The journal lives beside the cache: <cache_dir>/journal, lost bytes in
 * <cache_dir>/lost+found. Unfinished entries of an earlier run are settled in the
 * background from here on (journal_settle.c). */
static int journal_open_cfg(struct fs_ctx *fs)
{
	char dir[4096], lost[4096];
	snprintf(dir, sizeof(dir), "%s/journal", fs->cfg.cache_dir);
	snprintf(lost, sizeof(lost), "%s/lost+found", fs->cfg.cache_dir);
	struct journal_config jc = {.dir = dir,
				    .lost_dir = lost,
				    .api = fs->api,
				    .cache = fs->cache,
				    .log = journal_log,
				    .on_upload = fs_wb_on_upload,
				    .on_restored = fs_journal_on_restored,
				    .arg = fs};
	int rc = journal_open(&jc, &fs->journal);
	if (rc == 0 && journal_pending(fs->journal) > 0)
		fs_log(FS_LOG_WARN, "replaying %zu unfinished journal entries in the background",
		       journal_pending(fs->journal));
	if (rc == 0 && (rc = journal_start(fs->journal)) < 0) {
		journal_close(fs->journal);
		fs->journal = NULL;
	}
	if (rc < 0)
		fs_log(FS_LOG_ERR, "cannot open journal '%s': %s", dir, strerror(-rc));
	return rc;
}

static void config_free(struct fs_config *cfg)
{
	char **s[] = {&cfg->account,   &cfg->mountpoint, &cfg->api_url,
		      &cfg->cache_dir, &cfg->cache_size, &cfg->credentials,
		      &cfg->ca_file,   &cfg->rate_limit, &cfg->umask_str,
		      &cfg->log_file,  &cfg->stamp_str, &cfg->batch,
		      &cfg->batch_url};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		free(*s[i]);
		*s[i] = NULL;
	}
	free(cfg->sign_key); /* delivery options */
	free(cfg->delivery_url);
	cfg->sign_key = cfg->delivery_url = NULL;
}

static int add_fuse_opts(struct fs_ctx *fs, struct fuse_args *args)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "-ofsname=imagesfs:%s,subtype=imagesfs", fs->cfg.account);
	if (fuse_opt_add_arg(args, buf) < 0)
		return -1;
	if (fs->cfg.allow_other && fuse_opt_add_arg(args, "-odefault_permissions") < 0)
		return -1;
	return 0;
}

static int run_session(struct fs_ctx *fs, struct fuse_args *args, const struct fs_creds *c,
		       double rate, uint64_t cache_bytes)
{
	int rc = 1;
	fs->se = fuse_session_new(args, &fs_ops, sizeof(fs_ops), fs);
	if (!fs->se)
		return 1;
	if (fuse_set_signal_handlers(fs->se) < 0)
		goto out_destroy;
	if (fs_ctl_signals(fs) < 0) /* SIGHUP: refresh every listing, not exit */
		goto out_signals;
	if (fuse_session_mount(fs->se, fs->cfg.mountpoint) < 0)
		goto out_signals;
	fuse_daemonize(fs->cfg.foreground);
	fs_log_init(!fs->cfg.foreground, fs->cfg.debug);
	/* Everything with threads or sockets is made after the fork. */
	if (api_open(fs, c, rate) < 0 || cache_open_cfg(fs, cache_bytes) < 0) {
		fs_log(FS_LOG_ERR, "cannot start; unmounting");
		goto out_unmount;
	}
	fs_local_open(fs); /* without it, learned sizes stay in memory (logged) */
	if (journal_open_cfg(fs) < 0 || fs_inval_start(fs) < 0)
		goto out_unmount;
	fs_log(FS_LOG_INFO, "mounted account %s at %s", fs->cfg.account, fs->cfg.mountpoint);
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (!lc)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(lc, 16);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	rc = fuse_session_loop_mt(fs->se, lc) < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(lc);
	fs_scratch_drop_all(fs);
out_unmount:
	fs_wb_drain(fs); /* the kernel is gone: pending uploads still run */
	journal_close(fs->journal); /* unfinished entries stay on disk for the next mount */
	fs->journal = NULL;
	fs_inval_stop(fs); /* after the journal's threads, which queue invalidations */
	fuse_session_unmount(fs->se);
out_signals:
	fuse_remove_signal_handlers(fs->se);
out_destroy:
	fuse_session_destroy(fs->se);
	fs->se = NULL;
	return rc;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fs_ctx fs;
	struct fs_creds creds = {0};
	uint64_t cache_bytes = 0;
	double rate = 0;
	int rc = 1, api_inited = 0;

	memset(&fs, 0, sizeof(fs));
	fs.cfg.dir_ttl = 60;
	fs.cfg.url_ttl = FS_DEFAULT_URL_TTL;
	fs.cfg.uid = fs.cfg.gid = -1;
	fs.umask = 022;
	pthread_mutex_init(&fs.lock, NULL);
	pthread_cond_init(&fs.list_cond, NULL);
	fs_log_init(0, 0);

	if (fuse_opt_parse(&args, &fs.cfg, fs_opt_table, opt_proc) < 0)
		goto out;
	fs_log_init(0, fs.cfg.debug);
	if (fs.cfg.log_file) {
		/* Opened now: the daemon changes to / and loses the caller's cwd. */
		int lrc = fs_log_open_file(fs.cfg.log_file);
		if (lrc < 0) {
			fprintf(stderr, "mount.imagesfs: cannot open log file '%s': %s\n",
				fs.cfg.log_file, strerror(-lrc));
			goto out;
		}
	}
	if (config_check(&fs, &cache_bytes, &rate) < 0 || creds_load(&fs.cfg, &creds) < 0)
		goto out;
	if (api_global_init() < 0) {
		fprintf(stderr, "mount.imagesfs: cannot initialise libcurl\n");
		goto out;
	}
	api_inited = 1;
	/* Fail fast, before mounting: credentials, account, cache directory. */
	int ok = api_open(&fs, &creds, rate) == 0 && account_check(&fs) == 0;
	api_client_free(fs.api);
	fs.api = NULL;
	if (ok && cache_open_cfg(&fs, cache_bytes) == 0) {
		cache_close(fs.cache);
		fs.cache = NULL;
	} else {
		ok = 0;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	fs.mount_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if (ok && fs_table_init(&fs) == 0 && fs_ctl_init(&fs) == 0 && add_fuse_opts(&fs, &args) == 0)
		rc = run_session(&fs, &args, &creds, rate, cache_bytes);
out:
	fs_local_close(&fs);
	if (fs.cache)
		cache_close(fs.cache);
	if (fs.api)
		api_client_free(fs.api);
	if (api_inited)
		api_global_cleanup();
	fs_ctl_cleanup();
	fs_rend_free(&fs);
	fs_table_free(&fs);
	creds_free(&creds);
	config_free(&fs.cfg);
	fs_log_close_file();
	fuse_opt_free_args(&args);
	pthread_cond_destroy(&fs.list_cond);
	pthread_mutex_destroy(&fs.lock);
	return rc;
}

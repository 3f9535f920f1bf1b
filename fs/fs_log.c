/*
 * fs_log.c - log lines of the daemon: stderr in the foreground, syslog once daemonized, or
 * a private file (-o log_file=PATH, mode 0600) when one is named.
 *
 * Messages never contain secrets: callers pass ids, paths and API error text only (the API
 * layer's messages come from the server envelope, never from request headers).
 *
 * Every API failure logged through fs_log_api is also kept in a ring of the last
 * FS_ERRLOG_MAX (.imagesfs/errors): fixed-size entries, one lock held only to copy.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_syslog;
static int log_debug;
static int log_fd = -1; /* set once before any thread starts */

static pthread_mutex_t errlog_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fs_errlog_entry errlog[FS_ERRLOG_MAX]; /* guarded by errlog_lock */
static uint64_t errlog_total;			      /* guarded by errlog_lock */

int fs_log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0) { /* an existing file may have been wider */
		int e = errno;
		close(fd);
		return -e;
	}
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void fs_log_close_file(void)
{
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
}

static void log_to_file(const char *line)
{
	char buf[1200], stamp[32];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(buf, sizeof(buf), "%s.%03ldZ imagesfs[%d]: %s\n", stamp,
		     ts.tv_nsec / 1000000, (int)getpid(), line);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	/* One write per line: O_APPEND keeps concurrent lines whole. */
	if (write(log_fd, buf, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

void fs_log_init(int use_syslog, int debug)
{
	log_syslog = use_syslog;
	log_debug = debug;
	if (use_syslog)
		openlog("mount.imagesfs", LOG_PID, LOG_DAEMON);
}

int fs_log_debug_enabled(void)
{
	return log_debug;
}

void fs_log(int level, const char *fmt, ...)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[1024];
	va_list ap;

	if (level == FS_LOG_DEBUG && !log_debug)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_fd >= 0)
		log_to_file(line);
	else if (log_syslog)
		syslog(prio[level], "%s", line);
	else
		fprintf(stderr, "imagesfs: %s\n", line);
}

const char *fs_errno_name(int err, char *buf, size_t len)
{
	const char *name = strerrorname_np(err);
	if (name)
		return name;
	snprintf(buf, len, "E%d", err);
	return buf;
}

static int64_t wall_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void errlog_add(const char *op, const char *path, int rc, const struct api_err *err)
{
	pthread_mutex_lock(&errlog_lock);
	struct fs_errlog_entry *e = &errlog[errlog_total % FS_ERRLOG_MAX];
	memset(e, 0, sizeof(*e));
	e->wall_ms = wall_now_ms();
	snprintf(e->op, sizeof(e->op), "%s", op);
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->err = -rc;
	if (err) {
		e->http_status = err->http_status;
		e->cf_code = err->cf_code;
		snprintf(e->message, sizeof(e->message), "%s", err->message);
	}
	if (!e->message[0])
		snprintf(e->message, sizeof(e->message), "%s", strerror(-rc));
	errlog_total++;
	pthread_mutex_unlock(&errlog_lock);
}

size_t fs_errlog_snapshot(struct fs_errlog_entry *out, uint64_t *total)
{
	pthread_mutex_lock(&errlog_lock);
	uint64_t n = errlog_total < FS_ERRLOG_MAX ? errlog_total : FS_ERRLOG_MAX;
	for (uint64_t i = 0; out && i < n; i++)
		out[i] = errlog[(errlog_total - n + i) % FS_ERRLOG_MAX];
	if (total)
		*total = errlog_total;
	pthread_mutex_unlock(&errlog_lock);
	return (size_t)n;
}

int fs_log_api(const char *op, const char *path, int rc, const struct api_err *err)
{
	char buf[384];

	errlog_add(op, path, rc, err);
	if (err && (err->http_status || err->curl_code || err->message[0]))
		fs_log(FS_LOG_ERR, "cannot %s '%s': %s", op, path,
		       api_err_str(err, buf, sizeof(buf)));
	else
		fs_log(FS_LOG_ERR, "cannot %s '%s': %s", op, path, strerror(-rc));
	return rc;
}

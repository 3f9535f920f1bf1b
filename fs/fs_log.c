/*
 * fs_log.c - log lines of the daemon: stderr in the foreground, syslog once daemonized, or
 * a private file (-o log_file=PATH, mode 0600) when one is named.
 *
 * Messages never contain secrets: callers pass ids, paths and API error text only (the API
 * layer's messages come from the server envelope, never from request headers).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_syslog;
static int log_debug;
static int log_fd = -1; /* set once before any thread starts */

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

int fs_log_api(const char *op, const char *path, int rc, const struct api_err *err)
{
	char buf[384];

	if (err && (err->http_status || err->curl_code || err->message[0]))
		fs_log(FS_LOG_ERR, "cannot %s '%s': %s", op, path,
		       api_err_str(err, buf, sizeof(buf)));
	else
		fs_log(FS_LOG_ERR, "cannot %s '%s': %s", op, path, strerror(-rc));
	return rc;
}

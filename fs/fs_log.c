/*
 * fs_log.c - log lines of the daemon: stderr in the foreground, syslog once daemonized.
 *
 * Messages never contain secrets: callers pass ids, paths and API error text only (the API
 * layer's messages come from the server envelope, never from request headers).
 */
#include "fs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static int log_syslog;
static int log_debug;

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
	if (log_syslog)
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

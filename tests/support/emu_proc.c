/*
 * emu_proc.c - see emu_proc.h.
 */
#include "emu_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define EMU_MAX_ARGS 64
#define EMU_MAX_ENV 512
#define EMU_HTTP_TIMEOUT_MS 10000
#define EMU_STOP_TIMEOUT_MS 10000

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

const char *emu_proc_binary(void)
{
	static char path[4096];
	const char *dir = getenv("IMAGESFS_BIN");
#ifdef IMAGESFS_BIN_DIR
	if (!dir || !*dir)
		dir = IMAGESFS_BIN_DIR;
#endif
	if (!dir || !*dir)
		dir = ".";
	snprintf(path, sizeof(path), "%s/imagesfs-emulator", dir);
	return path;
}

/* environ adjusted by `env`; the strings are borrowed. NULL on overflow. */
static char **build_env(const char *const *env, char **out, size_t cap)
{
	size_t n = 0;
	for (char **e = environ; e && *e; e++) {
		int overridden = 0;
		for (const char *const *x = env; x && *x && !overridden; x++) {
			size_t kl = strcspn(*x, "=");
			overridden = strncmp(*e, *x, kl) == 0 && (*e)[kl] == '=';
		}
		if (!overridden) {
			if (n + 1 >= cap)
				return NULL;
			out[n++] = *e;
		}
	}
	for (const char *const *x = env; x && *x; x++) {
		if (!strchr(*x, '='))
			continue;
		if (n + 1 >= cap)
			return NULL;
		out[n++] = (char *)*x;
	}
	out[n] = NULL;
	return out;
}

static void *drain_main(void *arg)
{
	struct emu_proc *p = arg;
	char buf[4096];
	while (read(p->out_fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

/* Reads the first stdout line within the deadline. */
static int read_url_line(struct emu_proc *p, char *line, size_t len, int timeout_ms)
{
	size_t n = 0;
	long deadline = now_ms() + timeout_ms;
	while (n + 1 < len) {
		long left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
		int r = poll(&pf, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 ? -ETIMEDOUT : -errno;
		ssize_t got = read(p->out_fd, line + n, 1); /* byte-wise: keep the rest unread */
		if (got <= 0)
			return -ECHILD;
		if (line[n] == '\n') {
			line[n] = '\0';
			return 0;
		}
		n++;
	}
	return -EOVERFLOW;
}

static int parse_url(struct emu_proc *p, const char *line)
{
	const char *h = line + 7, *colon, *slash;
	if (strncmp(line, "http://", 7) != 0 || !(slash = strchr(h, '/')))
		return -EPROTO;
	colon = memrchr(h, ':', (size_t)(slash - h));
	if (!colon || (size_t)(colon - h) >= sizeof(p->host))
		return -EPROTO;
	memcpy(p->host, h, (size_t)(colon - h));
	p->host[colon - h] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (end != slash || port <= 0 || port > 65535)
		return -EPROTO;
	p->port = (int)port;
	if (strlen(line) >= sizeof(p->base_url))
		return -EOVERFLOW;
	memcpy(p->base_url, line, strlen(line) + 1);
	return 0;
}

static pid_t spawn(const char *const *args, const char *const *env, int out_w, int *err)
{
	char *argv[EMU_MAX_ARGS + 4], *envp[EMU_MAX_ENV];
	size_t a = 0;
	argv[a++] = (char *)emu_proc_binary();
	argv[a++] = "--listen";
	argv[a++] = "127.0.0.1:0";
	for (const char *const *x = args; x && *x; x++) {
		if (a >= EMU_MAX_ARGS + 3) {
			*err = -E2BIG;
			return -1;
		}
		argv[a++] = (char *)*x;
	}
	argv[a] = NULL;
	if (!build_env(env, envp, EMU_MAX_ENV)) {
		*err = -E2BIG;
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		dup2(out_w, 1);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	if (pid < 0)
		*err = -errno;
	return pid;
}

int emu_proc_start(struct emu_proc *p, const char *const *args, const char *const *env,
		   int timeout_ms)
{
	int fds[2], err = 0;
	char line[512];
	memset(p, 0, sizeof(*p));
	p->out_fd = -1;
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -errno;
	p->pid = spawn(args, env, fds[1], &err);
	close(fds[1]);
	if (p->pid < 0) {
		p->pid = 0;
		close(fds[0]);
		return err;
	}
	p->out_fd = fds[0];
	err = read_url_line(p, line, sizeof(line), timeout_ms);
	if (!err)
		err = parse_url(p, line);
	if (!err && pthread_create(&p->drain, NULL, drain_main, p) == 0)
		p->drain_started = 1;
	else if (!err)
		err = -EAGAIN;
	if (err) {
		fprintf(stderr, "emu_proc: cannot start '%s': %s\n", emu_proc_binary(),
			strerror(-err));
		emu_proc_stop(p);
	}
	return err;
}

static int reap(pid_t pid, int timeout_ms, int *status)
{
	long deadline = now_ms() + timeout_ms;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(10000);
	}
}

int emu_proc_stop(struct emu_proc *p)
{
	int status = 0, rc = 0;
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		if (reap(p->pid, EMU_STOP_TIMEOUT_MS, &status) == -ETIMEDOUT) {
			fprintf(stderr, "emu_proc: emulator %d ignored SIGTERM, killing\n", p->pid);
			kill(p->pid, SIGKILL);
			reap(p->pid, EMU_STOP_TIMEOUT_MS, &status);
		}
		rc = WIFEXITED(status)	   ? WEXITSTATUS(status)
		     : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
					   : -EIO;
		p->pid = 0;
	}
	if (p->drain_started) {
		pthread_join(p->drain, NULL); /* the pipe hit EOF when the child exited */
		p->drain_started = 0;
	}
	if (p->out_fd >= 0) {
		close(p->out_fd);
		p->out_fd = -1;
	}
	return rc;
}

static int connect_loopback(const struct emu_proc *p)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
	struct timeval tv = {.tv_sec = EMU_HTTP_TIMEOUT_MS / 1000};
	if (inet_pton(AF_INET, p->host, &sa.sin_addr) != 1)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static int send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads the whole response (until EOF), keeping at most cap-1 bytes. */
static ssize_t recv_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char tmp[8192];
		ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		size_t room = cap - 1 - n;
		memcpy(buf + n, tmp, (size_t)r < room ? (size_t)r : room);
		n += (size_t)r < room ? (size_t)r : room;
	}
	buf[n] = '\0';
	return (ssize_t)n;
}

int emu_proc_http(const struct emu_proc *p, const char *method, const char *path, const char *body,
		  int *status, char *out, size_t outlen)
{
	size_t cap = 1 << 20;
	char head[1024];
	char *resp = malloc(cap);
	if (!resp)
		return -ENOMEM;
	int fd = connect_loopback(p), rc = 0;
	if (fd < 0) {
		free(resp);
		return fd;
	}
	size_t blen = body ? strlen(body) : 0;
	snprintf(head, sizeof(head),
		 "%s %s HTTP/1.0\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		 method, path, p->host, p->port, blen);
	rc = send_all(fd, head, strlen(head));
	if (!rc && blen)
		rc = send_all(fd, body, blen);
	ssize_t n = rc ? rc : recv_all(fd, resp, cap);
	close(fd);
	if (n < 0) {
		free(resp);
		return (int)n;
	}
	char *sep = strstr(resp, "\r\n\r\n");
	if (strncmp(resp, "HTTP/1.", 7) != 0 || !sep || strlen(resp) < 12) {
		free(resp);
		return -EPROTO;
	}
	*status = (int)strtol(resp + 9, NULL, 10);
	if (out && outlen)
		snprintf(out, outlen, "%s", sep + 4);
	free(resp);
	return 0;
}

int emu_proc_stats(const struct emu_proc *p, char *out, size_t outlen)
{
	int status = 0;
	int rc = emu_proc_http(p, "GET", "/__emulator/stats", NULL, &status, out, outlen);
	if (!rc && status != 200)
		rc = -EIO;
	return rc;
}

long emu_proc_stat(const struct emu_proc *p, const char *op)
{
	char buf[16384], key[128];
	int rc = emu_proc_stats(p, buf, sizeof(buf));
	if (rc)
		return rc;
	snprintf(key, sizeof(key), "\"%s\":", op);
	const char *at = strstr(buf, key);
	if (!at)
		return 0;
	at += strlen(key);
	while (*at == ' ')
		at++;
	char *end;
	long v = strtol(at, &end, 10);
	return end == at ? -EPROTO : v;
}

int emu_proc_seed(const struct emu_proc *p, long count, const char *prefix)
{
	char body[1200], out[1024];
	int status = 0;
	snprintf(body, sizeof(body), "{\"count\":%ld,\"prefix\":\"%s\"}", count, prefix);
	int rc = emu_proc_http(p, "POST", "/__emulator/seed", body, &status, out, sizeof(out));
	if (!rc && status != 200) {
		fprintf(stderr, "emu_proc: seed failed: HTTP %d %s\n", status, out);
		rc = -EIO;
	}
	return rc;
}

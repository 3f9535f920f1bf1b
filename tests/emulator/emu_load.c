/*
 * emu_load.c - imagesfs-emuload: a tiny keep-alive HTTP/1.1 GET load generator used to
 * measure the emulator (no wrk needed).
 *
 *   imagesfs-emuload [-c CONNECTIONS] [-d SECONDS] [-H 'Header: value']... URL
 *
 * Each connection is one thread doing sequential GETs on one kept-alive socket (reconnecting
 * when the server closes). Prints requests/s, status classes and latency percentiles.
 * The Authorization header may be given as -H or, to keep it out of argv, via the environment
 * variable EMULOAD_AUTH (the full header value, e.g. "Bearer TOKEN").
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#define LOAD_MAX_CONNS 1024
#define LOAD_MAX_HEADERS 8
#define LOAD_BUF (256 * 1024)
#define LOAD_LAT_SAMPLES 200000

struct load_cfg {
	char host[256];
	char port[8];
	char request[4096];
	size_t reqlen;
	double seconds;
};

struct load_thread {
	pthread_t tid;
	const struct load_cfg *cfg;
	unsigned long ok;
	unsigned long non2xx;
	unsigned long errors;
	uint32_t *lat_us;
	size_t nlat;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const struct load_cfg *c)
{
	struct addrinfo hints = {0}, *res;
	int fd, one = 1;

	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(c->host, c->port, &hints, &res))
		return -1;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Reads one response; returns the status or -1. */
static int read_response(int fd, char *buf)
{
	size_t have = 0, need = 0;
	long clen = -1;
	char *hend = NULL;
	int status = -1;

	for (;;) {
		ssize_t r = read(fd, buf + have, LOAD_BUF - 1 - have);

		if (r <= 0)
			return -1;
		have += (size_t)r;
		buf[have] = '\0';
		if (!hend) {
			char *cl;

			hend = strstr(buf, "\r\n\r\n");
			if (!hend) {
				if (have >= LOAD_BUF - 1)
					return -1;
				continue;
			}
			if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
				return -1;
			cl = strcasestr(buf, "\r\ncontent-length:");
			if (!cl || cl > hend)
				return -1;
			clen = strtol(cl + 17, NULL, 10);
			need = (size_t)(hend + 4 - buf) + (size_t)clen;
		}
		if (have >= need)
			return status;
		if (have >= LOAD_BUF - 1) {
			/* large body: keep only the count */
			need -= have;
			have = 0;
			hend = buf;
		}
	}
}

static void *load_main(void *arg)
{
	struct load_thread *t = arg;
	const struct load_cfg *c = t->cfg;
	char *buf = malloc(LOAD_BUF);
	double end = now_s() + c->seconds;
	int fd = -1;

	while (buf && now_s() < end) {
		double t0;
		int st;

		if (fd < 0 && (fd = dial(c)) < 0) {
			t->errors++;
			usleep(1000);
			continue;
		}
		t0 = now_s();
		if (write(fd, c->request, c->reqlen) != (ssize_t)c->reqlen ||
		    (st = read_response(fd, buf)) < 0) {
			t->errors++;
			close(fd);
			fd = -1;
			continue;
		}
		if (st >= 200 && st < 300)
			t->ok++;
		else
			t->non2xx++;
		if (t->nlat < LOAD_LAT_SAMPLES)
			t->lat_us[t->nlat++] = (uint32_t)((now_s() - t0) * 1e6);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int parse_url(const char *url, struct load_cfg *c, const char **path)
{
	const char *p, *slash, *colon;

	if (strncmp(url, "http://", 7) != 0)
		return -1;
	p = url + 7;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	colon = memchr(p, ':', (size_t)(slash - p));
	if (!colon || (size_t)(colon - p) >= sizeof(c->host) ||
	    (size_t)(slash - colon - 1) >= sizeof(c->port))
		return -1;
	memcpy(c->host, p, (size_t)(colon - p));
	memcpy(c->port, colon + 1, (size_t)(slash - colon - 1));
	*path = *slash ? slash : "/";
	return 0;
}

static void report(struct load_thread *th, int n, double elapsed)
{
	unsigned long ok = 0, bad = 0, err = 0;
	size_t nlat = 0, k = 0;
	uint32_t *all;
	int i;

	for (i = 0; i < n; i++) {
		ok += th[i].ok;
		bad += th[i].non2xx;
		err += th[i].errors;
		nlat += th[i].nlat;
	}
	all = malloc((nlat + 1) * sizeof(*all));
	for (i = 0; all && i < n; i++) {
		memcpy(all + k, th[i].lat_us, th[i].nlat * sizeof(*all));
		k += th[i].nlat;
	}
	printf("requests: %lu ok, %lu non-2xx, %lu errors in %.2f s = %.0f req/s\n", ok, bad, err,
	       elapsed, (double)(ok + bad) / elapsed);
	if (all && nlat) {
		qsort(all, nlat, sizeof(*all), cmp_u32);
		printf("latency us: p50 %u  p90 %u  p99 %u  max %u\n", all[nlat / 2],
		       all[nlat * 9 / 10], all[nlat * 99 / 100], all[nlat - 1]);
	}
	free(all);
}

int main(int argc, char **argv)
{
	static struct load_cfg cfg;
	struct load_thread *th;
	const char *hdrs[LOAD_MAX_HEADERS], *path = NULL, *auth = getenv("EMULOAD_AUTH");
	int nh = 0, conns = 8, opt, i, off;
	double t0;

	cfg.seconds = 5;
	while ((opt = getopt(argc, argv, "c:d:H:")) != -1) {
		if (opt == 'c')
			conns = (int)strtol(optarg, NULL, 10);
		else if (opt == 'd')
			cfg.seconds = strtod(optarg, NULL);
		else if (opt == 'H' && nh < LOAD_MAX_HEADERS)
			hdrs[nh++] = optarg;
		else
			goto usage;
	}
	if (optind != argc - 1 || conns < 1 || conns > LOAD_MAX_CONNS || cfg.seconds <= 0 ||
	    parse_url(argv[optind], &cfg, &path))
		goto usage;
	off = snprintf(cfg.request, sizeof(cfg.request), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n", path,
		       cfg.host, cfg.port);
	for (i = 0; i < nh && off < (int)sizeof(cfg.request); i++)
		off += snprintf(cfg.request + off, sizeof(cfg.request) - (size_t)off, "%s\r\n",
				hdrs[i]);
	if (auth && off < (int)sizeof(cfg.request))
		off += snprintf(cfg.request + off, sizeof(cfg.request) - (size_t)off,
				"Authorization: %s\r\n", auth);
	if (off < (int)sizeof(cfg.request))
		off += snprintf(cfg.request + off, sizeof(cfg.request) - (size_t)off, "\r\n");
	if (off >= (int)sizeof(cfg.request))
		goto usage;
	cfg.reqlen = (size_t)off;
	th = calloc((size_t)conns, sizeof(*th));
	if (!th)
		return 1;
	t0 = now_s();
	for (i = 0; i < conns; i++) {
		th[i].cfg = &cfg;
		th[i].lat_us = malloc(LOAD_LAT_SAMPLES * sizeof(uint32_t));
		if (!th[i].lat_us || pthread_create(&th[i].tid, NULL, load_main, &th[i]))
			return 1;
	}
	for (i = 0; i < conns; i++)
		pthread_join(th[i].tid, NULL);
	report(th, conns, now_s() - t0);
	for (i = 0; i < conns; i++)
		free(th[i].lat_us);
	free(th);
	return 0;
usage:
	fprintf(stderr, "usage: imagesfs-emuload [-c CONNS] [-d SECONDS] [-H 'Name: value']... "
			"http://HOST:PORT/PATH\n");
	return 2;
}

/*
 * fake_http.c - see fake_http.h.
 */
#include "fake_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static void add_step(struct fake_http *f, enum fake_action a, char *raw, size_t len)
{
	if (f->n_steps >= FAKE_MAX_STEPS) {
		free(raw);
		return;
	}
	f->steps[f->n_steps].action = a;
	f->steps[f->n_steps].raw = raw;
	f->steps[f->n_steps].raw_len = len;
	f->n_steps++;
}

void fake_add_reply(struct fake_http *f, int status, const char *extra_headers, const char *body)
{
	char *raw = NULL;
	int n = asprintf(&raw, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n%s", status,
			 strlen(body), extra_headers ? extra_headers : "", body);
	if (n < 0)
		return;
	add_step(f, FAKE_REPLY, raw, (size_t)n);
}

void fake_add_raw(struct fake_http *f, const char *raw, size_t len)
{
	char *p = malloc(len ? len : 1);
	if (!p)
		return;
	memcpy(p, raw, len);
	add_step(f, FAKE_REPLY, p, len);
}

void fake_add_raw_close(struct fake_http *f, const char *raw, size_t len)
{
	fake_add_raw(f, raw, len);
	if (f->n_steps > 0)
		f->steps[f->n_steps - 1].action = FAKE_REPLY_CLOSE;
}

void fake_add_action(struct fake_http *f, enum fake_action a)
{
	add_step(f, a, NULL, 0);
}

/* Waits up to ms for fd to become readable; 1 ready, 0 timeout, stop, or (when
 * watch_listen) a new connection waiting on the listening socket. */
static int wait_readable_ex(struct fake_http *f, int fd, int ms, int watch_listen)
{
	for (int waited = 0; waited < ms && !f->stop; waited += 50) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
				      {.fd = f->lfd, .events = POLLIN}};
		int r = poll(p, watch_listen ? 2 : 1, 50);
		if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			return 1;
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return 0;
	}
	return 0;
}

static int wait_readable(struct fake_http *f, int fd, int ms)
{
	return wait_readable_ex(f, fd, ms, 0);
}

static long content_length(const char *head)
{
	const char *p = head;
	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			return strtol(p + 15, NULL, 10);
	}
	return 0;
}

/* Reads one request from fd into rq. 0 ok, -1 connection closed or timed out. */
static int read_request(struct fake_http *f, int fd, struct fake_req *rq)
{
	size_t hl = 0;
	char *end = NULL;
	memset(rq, 0, sizeof(*rq));
	while (!end) {
		if (hl + 1 >= sizeof(rq->head) || !wait_readable_ex(f, fd, 10000, hl == 0))
			return -1;
		ssize_t n = recv(fd, rq->head + hl, sizeof(rq->head) - 1 - hl, 0);
		if (n <= 0)
			return -1;
		hl += (size_t)n;
		rq->head[hl] = '\0';
		end = strstr(rq->head, "\r\n\r\n");
	}
	size_t head_len = (size_t)(end + 4 - rq->head);
	size_t have = hl - head_len;
	long cl = content_length(rq->head);
	memcpy(rq->body, end + 4, have < sizeof(rq->body) - 1 ? have : sizeof(rq->body) - 1);
	*(end + 4) = '\0';
	if (strcasestr(rq->head, "Expect: 100-continue"))
		send(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL);
	rq->body_len = have;
	while ((long)rq->body_len < cl) {
		char buf[16384];
		if (!wait_readable(f, fd, 10000))
			return -1;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return -1;
		size_t room =
		    rq->body_len < sizeof(rq->body) - 1 ? sizeof(rq->body) - 1 - rq->body_len : 0;
		memcpy(rq->body + rq->body_len, buf, (size_t)n < room ? (size_t)n : room);
		rq->body_len += (size_t)n;
	}
	return 0;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Serves requests on one connection; returns when it closes or a step drops it. */
static void serve_conn(struct fake_http *f, int fd)
{
	struct fake_req rq;
	while (!f->stop && read_request(f, fd, &rq) == 0) {
		pthread_mutex_lock(&f->lock);
		int i = f->next < f->n_steps ? f->next++ : -1;
		if (f->n_reqs < FAKE_MAX_STEPS)
			f->reqs[f->n_reqs++] = rq;
		pthread_mutex_unlock(&f->lock);
		if (i < 0) {
			static const char nope[] = "HTTP/1.1 500 X\r\nContent-Length: 2\r\n\r\n{}";
			send_all(fd, nope, sizeof(nope) - 1);
			continue;
		}
		struct fake_step *s = &f->steps[i];
		if (s->action == FAKE_DROP)
			return;
		if (s->action == FAKE_HANG) {
			while (!f->stop)
				usleep(20000);
			return;
		}
		send_all(fd, s->raw, s->raw_len);
		if (s->action == FAKE_REPLY_CLOSE)
			return;
	}
}

static void *serve(void *arg)
{
	struct fake_http *f = arg;
	while (!f->stop) {
		if (!wait_readable(f, f->lfd, 200))
			continue;
		int fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&f->lock);
		f->n_conns++;
		pthread_mutex_unlock(&f->lock);
		serve_conn(f, fd);
		close(fd);
	}
	return NULL;
}

int fake_http_start(struct fake_http *f)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	pthread_mutex_init(&f->lock, NULL);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0)
		return -errno;
	if (bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(f->lfd, 16) != 0 ||
	    getsockname(f->lfd, (struct sockaddr *)&sa, &sl) != 0) {
		int e = errno;
		close(f->lfd);
		return -e;
	}
	f->port = ntohs(sa.sin_port);
	snprintf(f->base_url, sizeof(f->base_url), "http://127.0.0.1:%d/client/v4", f->port);
	f->stop = 0;
	if (pthread_create(&f->thread, NULL, serve, f) != 0) {
		close(f->lfd);
		return -EAGAIN;
	}
	return 0;
}

void fake_http_stop(struct fake_http *f)
{
	f->stop = 1;
	pthread_join(f->thread, NULL);
	close(f->lfd);
	for (int i = 0; i < f->n_steps; i++)
		free(f->steps[i].raw);
	f->n_steps = 0;
	pthread_mutex_destroy(&f->lock);
}

int fake_http_nreqs(struct fake_http *f)
{
	pthread_mutex_lock(&f->lock);
	int n = f->n_reqs;
	pthread_mutex_unlock(&f->lock);
	return n;
}

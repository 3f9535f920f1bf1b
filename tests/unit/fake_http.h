/*
 * fake_http.h - a scripted HTTP/1.1 server on 127.0.0.1 for unit tests of the API client's
 * transport: it answers requests with a fixed list of canned actions (reply, drop the
 * connection, hang, send a short body) and records what it received.
 *
 * One thread, one connection at a time (a new connection replaces the current one).
 * Every wait is bounded; fake_http_stop() joins the thread.
 */
#ifndef IMAGESFS_FAKE_HTTP_H
#define IMAGESFS_FAKE_HTTP_H

#include <pthread.h>
#include <stddef.h>

#define FAKE_MAX_STEPS 32
#define FAKE_REQ_MAX 8192

enum fake_action {
	FAKE_REPLY,	  /* send raw[] and keep the connection */
	FAKE_DROP,	  /* read the request, close without answering */
	FAKE_HANG,	  /* read the request, never answer (until stopped) */
	FAKE_REPLY_CLOSE, /* send raw[] and close the connection */
};

struct fake_step {
	enum fake_action action;
	char *raw; /* full response bytes (owned) */
	size_t raw_len;
};

struct fake_req {
	char head[FAKE_REQ_MAX]; /* request line + headers, NUL-terminated */
	char body[FAKE_REQ_MAX]; /* first bytes of the body, NUL-terminated */
	size_t body_len;	 /* full body length */
};

struct fake_http {
	int lfd;
	int port;
	char base_url[64]; /* "http://127.0.0.1:PORT/client/v4" */
	pthread_t thread;
	pthread_mutex_t lock;
	struct fake_step steps[FAKE_MAX_STEPS];
	int n_steps;
	int next;			      /* guarded by lock */
	struct fake_req reqs[FAKE_MAX_STEPS]; /* guarded by lock */
	int n_reqs;			      /* guarded by lock */
	int n_conns;			      /* connections accepted; guarded by lock */
	volatile int stop;
};

/* Adds a reply: status line "HTTP/1.1 <status>", extra header lines (each ending CRLF,
 * nullable), and a body with a correct Content-Length. */
void fake_add_reply(struct fake_http *f, int status, const char *extra_headers, const char *body);
/* Adds a raw response, sent byte for byte. */
void fake_add_raw(struct fake_http *f, const char *raw, size_t len);
void fake_add_action(struct fake_http *f, enum fake_action a);
/* Adds a raw response after which the connection is closed. */
void fake_add_raw_close(struct fake_http *f, const char *raw, size_t len);

/* Binds 127.0.0.1:0 and starts serving. 0 or -errno. */
int fake_http_start(struct fake_http *f);
/* Stops, joins and frees the steps. */
void fake_http_stop(struct fake_http *f);
/* Number of requests received so far. */
int fake_http_nreqs(struct fake_http *f);

#endif

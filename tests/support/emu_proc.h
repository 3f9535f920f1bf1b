/*
 * emu_proc.h - run a real imagesfs-emulator process from C tests.
 *
 * The emulator is started on 127.0.0.1:0 (a free port), and its base URL is read from the
 * first line it prints on stdout. Every wait is bounded. The child gets PR_SET_PDEATHSIG,
 * so it dies with the test process even if the test crashes before emu_proc_stop().
 * Only loopback is ever contacted. Not thread-safe per struct; separate structs are fine.
 */
#ifndef IMAGESFS_EMU_PROC_H
#define IMAGESFS_EMU_PROC_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

struct emu_proc {
	pid_t pid;	    /* 0 when not running */
	char base_url[256]; /* "http://127.0.0.1:PORT/client/v4" as printed */
	char host[64];	    /* "127.0.0.1" */
	int port;
	int out_fd; /* read end of the child's stdout, drained by `drain` */
	pthread_t drain;
	int drain_started;
};

/* Path of the emulator binary: $IMAGESFS_BIN/imagesfs-emulator, else
 * IMAGESFS_BIN_DIR/imagesfs-emulator when that macro was defined at compile time, else
 * "./imagesfs-emulator". Returns a static string. */
const char *emu_proc_binary(void);

/* Starts the emulator with "--listen 127.0.0.1:0" followed by args (NULL-terminated list,
 * nullable). env (NULL-terminated, nullable) adjusts the inherited environment: "NAME=VALUE"
 * sets, a bare "NAME" removes. Waits up to timeout_ms for the URL line. On failure the child
 * is killed and reaped; returns 0 or -errno (-ETIMEDOUT, -ECHILD if it exited early). */
int emu_proc_start(struct emu_proc *p, const char *const *args, const char *const *env,
		   int timeout_ms);

/* SIGTERM, wait up to 10 s (then SIGKILL), reap, join the drain thread. Returns the exit
 * status (0..255), 128+signal when killed by a signal, or -errno. Safe on a stopped p. */
int emu_proc_stop(struct emu_proc *p);

/* One HTTP/1.0 request to the emulator's host:port (path starts with '/'). body nullable
 * (sent as application/json). *status receives the HTTP status; out (size outlen) the body,
 * NUL-terminated and truncated to fit. 10 s timeout. 0 or -errno. */
int emu_proc_http(const struct emu_proc *p, const char *method, const char *path, const char *body,
		  int *status, char *out, size_t outlen);

/* GET /__emulator/stats into out. 0 or -errno (-EIO on a non-200 answer). */
int emu_proc_stats(const struct emu_proc *p, char *out, size_t outlen);

/* Count of one operation from the stats ("images.list_v2", ...; "total" for the total):
 * >= 0, or -errno. An op absent from the stats counts 0. */
long emu_proc_stat(const struct emu_proc *p, const char *op);

/* POST /__emulator/seed {"count":N,"prefix":"..."}. 0 or -errno. */
int emu_proc_seed(const struct emu_proc *p, long count, const char *prefix);

#endif

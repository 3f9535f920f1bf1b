/*
 * emu_delay.c - delayed replies without blocking MHD threads.
 *
 * A handler that must answer later (--latency-ms, "stall" faults) suspends its connection
 * and schedules it here; one timer thread keeps a list sorted by wake time and calls
 * MHD_resume_connection() when due. Stopping resumes everything at once and refuses new
 * entries, so MHD_stop_daemon() never meets a connection that nobody will resume.
 * Cost: O(n) insertion into the sorted list, n = connections currently delayed (small).
 */
#include "emu.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

struct emu_delay_item {
	int64_t wake_ms;
	struct MHD_Connection *conn;
	struct emu_delay_item *next;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *delay_main(void *arg)
{
	struct emu_delay *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		struct emu_delay_item *it = d->head;
		int64_t now = mono_ms();

		if (!it) {
			pthread_cond_wait(&d->cond, &d->lock);
			continue;
		}
		if (it->wake_ms > now) {
			struct timespec ts;
			int64_t wake = it->wake_ms;

			ts.tv_sec = (time_t)(wake / 1000);
			ts.tv_nsec = (long)(wake % 1000) * 1000000;
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
			continue;
		}
		d->head = it->next;
		MHD_resume_connection(it->conn);
		free(it);
	}
	while (d->head) {
		struct emu_delay_item *it = d->head;

		d->head = it->next;
		MHD_resume_connection(it->conn);
		free(it);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int emu_delay_start(struct emu_delay *d)
{
	pthread_condattr_t ca;

	d->head = NULL;
	d->stopping = false;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, delay_main, d)) {
		pthread_cond_destroy(&d->cond);
		pthread_mutex_destroy(&d->lock);
		return -EAGAIN;
	}
	d->started = true;
	return 0;
}

int emu_delay_schedule(struct emu_delay *d, struct MHD_Connection *conn, int64_t ms)
{
	struct emu_delay_item *it = malloc(sizeof(*it)), **pp;

	if (!it)
		return -ENOMEM;
	it->wake_ms = mono_ms() + ms;
	it->conn = conn;
	pthread_mutex_lock(&d->lock);
	if (d->stopping) {
		pthread_mutex_unlock(&d->lock);
		free(it);
		return -ESHUTDOWN;
	}
	for (pp = &d->head; *pp && (*pp)->wake_ms <= it->wake_ms; pp = &(*pp)->next)
		;
	it->next = *pp;
	*pp = it;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void emu_delay_stop(struct emu_delay *d)
{
	if (!d->started)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
}

void emu_delay_release(struct emu_delay *d)
{
	if (!d->started)
		return;
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	d->started = false;
}

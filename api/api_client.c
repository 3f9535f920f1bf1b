/*
 * api_client.c - client lifetime, the pool of curl easy handles, and the CURLSH share.
 *
 * Threads: a request takes an easy handle from the pool (or makes one), uses it alone, and
 * gives it back; a handle is never used by two threads at once. A returned handle keeps
 * its live connection, so the next request on it reuses the TCP/TLS session (keep-alive).
 * The share object holds the DNS cache and TLS session cache for all handles, with one
 * mutex per data kind. Connections themselves are deliberately not shared
 * (CURL_LOCK_DATA_CONNECT): libcurl documents sharing the connection cache between
 * concurrently running threads as unsafe, and the pool gives the same reuse.
 */
#include "api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int api_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void api_global_cleanup(void)
{
	curl_global_cleanup();
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	struct api_client *c = ud;
	(void)h;
	(void)access;
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_lock[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct api_client *c = ud;
	(void)h;
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_lock[data]);
}

static int share_setup(struct api_client *c)
{
	c->share = curl_share_init();
	if (!c->share)
		return -ENOMEM;
	if (curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) ||
	    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) ||
	    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION))
		return -EIO;
	return 0;
}

/* A header value must not smuggle a second header or end the header block. */
static int header_safe(const char *s)
{
	return s && *s && !strpbrk(s, "\r\n");
}

static char *strdup_or_null(const char *s, int *rc)
{
	if (!s)
		return NULL;
	char *p = strdup(s);
	if (!p)
		*rc = -ENOMEM;
	return p;
}

static int check_config(const struct api_config *cfg)
{
	if (!cfg || !cfg->base_url || !cfg->account_id)
		return -EINVAL;
	if (strncmp(cfg->base_url, "http://", 7) != 0 && strncmp(cfg->base_url, "https://", 8) != 0)
		return -EINVAL;
	size_t alen = strlen(cfg->account_id);
	if (alen == 0 || alen > 32)
		return -EINVAL;
	int token = cfg->token != NULL, email = cfg->auth_email != NULL || cfg->auth_key != NULL;
	if (token == email)
		return -EINVAL; /* exactly one kind of credentials */
	if (token && !header_safe(cfg->token))
		return -EINVAL;
	if (email && (!header_safe(cfg->auth_email) || !header_safe(cfg->auth_key)))
		return -EINVAL;
	if (cfg->user_agent && !header_safe(cfg->user_agent))
		return -EINVAL;
	if (cfg->batch_url && strncmp(cfg->batch_url, "http://", 7) != 0 &&
	    strncmp(cfg->batch_url, "https://", 8) != 0)
		return -EINVAL;
	if (cfg->batch_tokens < 0 || cfg->batch_tokens > API_BATCH_MAX_TOKENS ||
	    cfg->batch_rate < 0)
		return -EINVAL;
	return 0;
}

static int build_urls_and_auth(struct api_client *c, const struct api_config *cfg)
{
	struct api_buf b = {0};
	size_t blen = strlen(cfg->base_url);
	while (blen > 0 && cfg->base_url[blen - 1] == '/')
		blen--;
	int rc = api_buf_add(&b, cfg->base_url, blen);
	if (!rc)
		rc = api_buf_adds(&b, "/accounts/");
	if (!rc)
		rc = api_buf_add_escaped(&b, cfg->account_id);
	if (!rc)
		rc = api_buf_adds(&b, "/images");
	if (rc) {
		api_buf_release(&b);
		return rc;
	}
	c->images_url = api_buf_steal(&b);

	if (cfg->token) {
		rc = api_buf_printf(&b, "Authorization: Bearer %s", cfg->token);
		c->auth_hdr[0] = api_buf_steal(&b);
	} else {
		rc = api_buf_printf(&b, "X-Auth-Email: %s", cfg->auth_email);
		c->auth_hdr[0] = api_buf_steal(&b);
		if (!rc)
			rc = api_buf_printf(&b, "X-Auth-Key: %s", cfg->auth_key);
		c->auth_hdr[1] = api_buf_steal(&b);
	}
	return rc;
}

static void apply_defaults(struct api_client *c, const struct api_config *cfg)
{
	c->connect_timeout_ms =
	    cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : API_DEF_CONNECT_TIMEOUT_MS;
	c->low_speed_time_s =
	    cfg->low_speed_time_s > 0 ? cfg->low_speed_time_s : API_DEF_LOW_SPEED_TIME_S;
	c->request_timeout_ms =
	    cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : API_DEF_REQUEST_TIMEOUT_MS;
	c->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : API_DEF_MAX_ATTEMPTS;
	c->retry_budget_ms =
	    cfg->retry_budget_ms > 0 ? cfg->retry_budget_ms : API_DEF_RETRY_BUDGET_MS;
	c->verbose = cfg->verbose;
	double rate = cfg->rate_per_sec == 0 ? API_DEF_RATE_PER_SEC : cfg->rate_per_sec;
	/* A caller-chosen rate without a burst gets one second's worth, not the default burst
	 * (which would let the first 120 requests exceed a stricter budget). */
	int burst = cfg->rate_burst > 0	 ? cfg->rate_burst
		    : cfg->rate_per_sec > 0 ? (cfg->rate_per_sec >= 1 ? (int)cfg->rate_per_sec : 1)
					    : API_DEF_RATE_BURST;
	api_bucket_init(&c->bucket, rate, burst, api_now_ns());
}

/* The batch pool. A caller-chosen rate gets a twentieth of a second's burst (at least 1),
 * so burst + rate stays within the rate the caller asked for plus 5%. */
static int batch_setup(struct api_client *c, const struct api_config *cfg)
{
	double rate = cfg->batch_rate > 0 ? cfg->batch_rate : API_DEF_BATCH_RATE;
	double burst = cfg->batch_rate > 0 ? (rate / 20 >= 1 ? rate / 20 : 1) : API_DEF_BATCH_BURST;
	size_t want = cfg->batch_tokens > 0 ? (size_t)cfg->batch_tokens : API_DEF_BATCH_TOKENS;
	return api_batch_init(&c->batch, cfg->batch_url, want, rate, burst);
}

int api_client_new(const struct api_config *cfg, struct api_client **out)
{
	int rc = check_config(cfg);
	*out = NULL;
	if (rc)
		return rc;
	struct api_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_lock[i], NULL);
	apply_defaults(c, cfg);
	rc = build_urls_and_auth(c, cfg);
	c->ca_file = strdup_or_null(cfg->ca_file, &rc);
	c->user_agent = strdup_or_null(cfg->user_agent ? cfg->user_agent : "imagesfs/0.1", &rc);
	if (!rc)
		rc = share_setup(c);
	c->log_fn = cfg->log_fn;
	c->log_arg = cfg->log_arg;
	if (!rc && cfg->batch_url)
		rc = batch_setup(c, cfg);
	if (rc) {
		api_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void api_client_free(struct api_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	if (c->share)
		curl_share_cleanup(c->share);
	api_batch_release(&c->batch);
	free(c->images_url);
	free_secret(c->auth_hdr[0]);
	free_secret(c->auth_hdr[1]);
	free(c->ca_file);
	free(c->user_agent);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_lock[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

CURL *api_pool_take(struct api_client *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->n_idle > 0)
		h = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_reset(h); /* options only: the live connection stays */
	else
		h = curl_easy_init();
	return h;
}

void api_pool_give(struct api_client *c, CURL *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->n_idle < API_POOL_MAX_IDLE) {
		c->idle[c->n_idle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_cleanup(h);
}

int64_t api_throttle(struct api_client *c)
{
	pthread_mutex_lock(&c->lock);
	int64_t wait_ns = api_bucket_take(&c->bucket, api_now_ns());
	pthread_mutex_unlock(&c->lock);
	if (wait_ns > 0) {
		long ms = (long)((wait_ns + 999999) / 1000000);
		atomic_fetch_add(&c->throttled_ms, (uint64_t)ms);
		api_sleep_ms(ms);
		return (int64_t)ms * 1000000;
	}
	return 0;
}

void api_counters_get(struct api_client *c, struct api_counters *out)
{
	out->requests = atomic_load(&c->n_requests);
	out->retries = atomic_load(&c->n_retries);
	out->throttled_ms = atomic_load(&c->throttled_ms);
	out->batch_requests = atomic_load(&c->n_batch_requests);
	out->global_requests = out->requests - out->batch_requests;
	out->batch_throttled_ms = atomic_load(&c->batch_throttled_ms);
}

void api_batch_snapshot(struct api_client *c, struct api_batch_snapshot *out)
{
	api_batch_snapshot_of(&c->batch, api_now_ns(), out);
}

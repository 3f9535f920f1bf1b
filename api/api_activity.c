/*
 * api_activity.c - what the client did: attempts per host and per operation, bytes, 429s,
 * uploads, and the rate limiter's budget, for the mount's `.imagesfs/status`.
 *
 * One spot counts every attempt (api_tally_attempt, called by api_http.c after each
 * curl_easy_perform), so a new route or host (a batch endpoint, a delivery host) is counted
 * without touching its callers. The operation is read from the URL: the part after
 * ".../images" names it (v2 list, v1/<id>/blob, v1/keys, ...), whatever the host.
 */
#include "api_internal.h"

#include <string.h>

static const char *const op_names[API_OP_N] = {
    "list", "get", "blob", "upload", "edit", "delete", "stats", "variants", "keys", "other",
};

const char *api_op_name(int op)
{
	return op >= 0 && op < API_OP_N ? op_names[op] : "other";
}

void api_tally_init(struct api_tally *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

void api_tally_release(struct api_tally *t)
{
	pthread_mutex_destroy(&t->lock);
}

/* The operation of a request from its method and the path after "/images". */
static int op_of(const char *method, const char *url)
{
	const char *p = strstr(url, "/images/v");
	if (!p)
		return API_OP_OTHER;
	p += strlen("/images/");
	if (strncmp(p, "v2", 2) == 0)
		return API_OP_LIST;
	if (strncmp(p, "v1", 2) != 0)
		return API_OP_OTHER;
	p += 2;
	if (*p == '\0' || *p == '?')
		return strcmp(method, "POST") == 0 ? API_OP_UPLOAD : API_OP_LIST;
	if (strncmp(p, "/stats", 6) == 0 && (p[6] == '\0' || p[6] == '?'))
		return API_OP_STATS;
	if (strncmp(p, "/variants", 9) == 0 && (p[9] == '\0' || p[9] == '/' || p[9] == '?'))
		return API_OP_VARIANTS;
	if (strncmp(p, "/keys", 5) == 0 && (p[5] == '\0' || p[5] == '/' || p[5] == '?'))
		return API_OP_KEYS;
	const char *q = strchr(p, '?');
	size_t len = q ? (size_t)(q - p) : strlen(p);
	if (len > 5 && strncmp(p + len - 5, "/blob", 5) == 0)
		return API_OP_BLOB;
	if (strcmp(method, "PATCH") == 0)
		return API_OP_EDIT;
	if (strcmp(method, "DELETE") == 0)
		return API_OP_DELETE;
	return strcmp(method, "GET") == 0 ? API_OP_GET : API_OP_OTHER;
}

/* "host:port" of url into buf (the authority without any userinfo). */
static void host_of(const char *url, char *buf, size_t len)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t n = strcspn(p, "/?#");
	const char *at = memchr(p, '@', n);
	if (at) {
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (n >= len)
		n = len - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
}

void api_tally_attempt(struct api_client *c, const struct api_req *r, long status)
{
	struct api_tally *t = &c->tally;
	curl_off_t up = 0, down = 0;
	char host[128];
	size_t i;

	curl_easy_getinfo(r->h, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(r->h, CURLINFO_SIZE_DOWNLOAD_T, &down);
	host_of(r->url, host, sizeof(host));
	int op = op_of(r->method, r->url);
	pthread_mutex_lock(&t->lock);
	t->per_op[op]++;
	t->bytes_up += up > 0 ? (uint64_t)up : 0;
	t->bytes_down += down > 0 ? (uint64_t)down : 0;
	if (status == 429)
		t->http_429++;
	for (i = 0; i < t->n_hosts && strcmp(t->host[i], host) != 0; i++)
		;
	if (i == t->n_hosts && i < API_ACT_MAX_HOSTS) {
		memcpy(t->host[i], host, sizeof(host));
		t->n_hosts++;
	}
	t->host_requests[i]++; /* i == API_ACT_MAX_HOSTS: "other" */
	pthread_mutex_unlock(&t->lock);
}

static void tally_add(struct api_client *c, uint64_t *field, int delta)
{
	pthread_mutex_lock(&c->tally.lock);
	*field += (uint64_t)(int64_t)delta;
	pthread_mutex_unlock(&c->tally.lock);
}

void api_tally_waiting(struct api_client *c, int delta)
{
	tally_add(c, &c->tally.waiting, delta);
}

void api_tally_upload_begin(struct api_client *c)
{
	tally_add(c, &c->tally.uploads_in_flight, 1);
}

void api_tally_upload_end(struct api_client *c, int rc)
{
	pthread_mutex_lock(&c->tally.lock);
	c->tally.uploads_in_flight--;
	if (rc < 0)
		c->tally.uploads_failed++;
	else
		c->tally.uploads_done++;
	pthread_mutex_unlock(&c->tally.lock);
}

/* Tokens the bucket would hold now, without taking one. Caller holds c->lock. */
static double bucket_peek(const struct api_bucket *b, int64_t now_ns)
{
	double tokens = b->tokens;
	if (now_ns > b->last_ns)
		tokens += (double)(now_ns - b->last_ns) * b->rate / 1e9;
	return tokens > b->burst ? b->burst : tokens;
}

void api_activity_get(struct api_client *c, struct api_activity *out)
{
	const struct api_tally *t = &c->tally;
	memset(out, 0, sizeof(*out));
	out->requests = atomic_load(&c->n_requests);
	out->retries = atomic_load(&c->n_retries);
	out->throttled_ms = atomic_load(&c->throttled_ms);

	pthread_mutex_lock(&c->tally.lock);
	out->http_429 = t->http_429;
	out->bytes_up = t->bytes_up;
	out->bytes_down = t->bytes_down;
	memcpy(out->per_op, t->per_op, sizeof(out->per_op));
	for (size_t i = 0; i < t->n_hosts; i++) {
		memcpy(out->hosts[i].name, t->host[i], sizeof(out->hosts[i].name));
		out->hosts[i].requests = t->host_requests[i];
	}
	out->n_hosts = t->n_hosts;
	if (t->host_requests[API_ACT_MAX_HOSTS]) {
		memcpy(out->hosts[out->n_hosts].name, "other", sizeof("other"));
		out->hosts[out->n_hosts++].requests = t->host_requests[API_ACT_MAX_HOSTS];
	}
	out->uploads_done = t->uploads_done;
	out->uploads_failed = t->uploads_failed;
	out->uploads_in_flight = t->uploads_in_flight;
	out->waiting = t->waiting;
	pthread_mutex_unlock(&c->tally.lock);

	pthread_mutex_lock(&c->lock);
	out->limited = c->bucket.enabled;
	out->budget_burst = c->bucket.burst;
	out->budget_rate = c->bucket.rate;
	out->budget_left = c->bucket.enabled ? bucket_peek(&c->bucket, api_now_ns()) : 0;
	pthread_mutex_unlock(&c->lock);
	if (out->budget_left < 0)
		out->budget_left = 0;
}

/*
 * api_outcome.c - settling an unknown outcome of a DELETE or a PATCH by reading the image back.
 *
 * A request whose every reply was lost (the connection closed after sending, a 5xx that may
 * come from a proxy after the origin acted, a timeout after the body went out) may or may
 * not have been applied. Reporting such a call as failed when the server did act makes the
 * caller's view wrong: `rm` fails although the image is gone, `setfattr` fails although the
 * value is stored, and a replace returns without restoring an image whose delete went
 * through. Uploads with a custom id are settled by a lookup already (api_image_write.c,
 * recover_upload); this file does the same for the two other image writes:
 *
 *   DELETE  one GET of the image: 404 means the delete happened (or someone else's did: the
 *           state the caller asked for holds either way) and the call succeeds; an image
 *           that is still there means it did not, and the original error is returned.
 *   PATCH   one GET of the image: when every field the patch set holds the value it sent
 *           (metadata compared as JSON, "{}" = no metadata; creator "" = none), the call
 *           succeeds with the image read back; otherwise the original error is returned.
 *
 * If the GET itself fails (the server is down for reads too), the outcome stays unknown and
 * the original error is returned: the caller must not assume either state. The check runs
 * only after the retry budget was spent on an outcome-unknown failure, so it costs nothing
 * on the normal path; it is one more request (with its own retries) on the rare one.
 *
 * These functions sit at the level of one image operation, above the transport, so they
 * hold whichever route (per-image endpoint or batch host) carried the request.
 */
#include "api_internal.h"

#include <errno.h>
#include <string.h>

/* Clears err after a settled call, keeping the attempt count of the original request. */
static int settled(struct api_err *err, int attempts)
{
	memset(err, 0, sizeof(*err));
	err->attempts = attempts;
	return 0;
}

int api_outcome_delete(struct api_client *c, const char *id, struct api_err *err, int rc)
{
	struct api_image img;
	struct api_err gerr;
	int grc = api_image_get(c, id, &img, &gerr);
	if (grc == -ENOENT)
		return settled(err, err->attempts);
	if (grc == 0)
		api_image_release(&img);
	return rc;
}

/* 1 if the stored metadata (text or NULL) equals what the patch sent ("{}" = none). */
static int same_meta(const char *sent, const char *stored)
{
	struct json_object *a = NULL, *b = NULL;
	char msg[64];
	int same = 0;
	if (!stored)
		stored = "{}";
	if (api_json_parse(sent, strlen(sent), &a, msg, sizeof(msg)) == 0 &&
	    api_json_parse(stored, strlen(stored), &b, msg, sizeof(msg)) == 0)
		same = json_object_equal(a, b);
	json_object_put(a);
	json_object_put(b);
	return same;
}

static int same_creator(const char *sent, const char *stored)
{
	if (!stored)
		stored = "";
	return strcmp(sent, stored) == 0;
}

int api_outcome_edit(struct api_client *c, const char *id, const struct api_image_patch *p,
		     struct api_image *out, struct api_err *err, int rc)
{
	struct api_image img;
	struct api_err gerr;
	if (api_image_get(c, id, &img, &gerr) != 0)
		return rc;
	int applied =
	    (!p->metadata_json || same_meta(p->metadata_json, img.meta_json)) &&
	    (!p->creator || same_creator(p->creator, img.creator)) &&
	    (p->require_signed_urls < 0 || !p->require_signed_urls == !img.require_signed_urls);
	if (!applied) {
		api_image_release(&img);
		return rc;
	}
	*out = img;
	return settled(err, err->attempts);
}

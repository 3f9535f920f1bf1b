/*
 * emu_render.c - renders a variant of an image with libvips, as imagedelivery.net would.
 *
 * Options (reference §1.9) and what the emulator does with them:
 *   fit=scale-down  fit inside width x height keeping the aspect ratio, never enlarge;
 *   fit=contain     fit inside, enlarging when smaller;
 *   fit=cover       fill width x height exactly, cropping the excess around the centre;
 *   fit=crop        like cover but never enlarges (a smaller image stays as it is);
 *   fit=pad         contain, then pad to exactly width x height with white.
 *   With only one of width/height the other follows the aspect ratio (cover/crop/pad then
 *   act like contain/scale-down); with neither the image is re-encoded unchanged in size.
 *   metadata=none strips every metadata block (EXIF, XMP, ICC, text chunks); keep keeps
 *   them; copyright keeps only EXIF's Copyright tag (an EXIF block holding just that).
 *   An unset fit is scale-down.
 * Output is the source's format (SVG is rasterized to PNG). One vips worker thread per
 * render and no operation cache, so the emulator's memory stays bounded by its requests.
 */
#include "emu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#define RENDER_UNBOUNDED VIPS_MAX_COORD

int emu_render_init(const char *argv0)
{
	if (VIPS_INIT(argv0))
		return -EIO;
	vips_concurrency_set(1);
	vips_cache_set_max(0);
	vips_leak_set(FALSE);
	return 0;
}

void emu_render_shutdown(void)
{
	vips_shutdown();
}

/* Saver suffix and media type for the source's media type. */
static const char *out_format(const char *src_type, const char **ctype)
{
	static const struct {
		const char *type, *suffix;
	} map[] = {
	    {"image/jpeg", ".jpg"},
	    {"image/png", ".png"},
	    {"image/gif", ".gif"},
	    {"image/webp", ".webp"},
	};
	size_t i;

	for (i = 0; src_type && i < sizeof(map) / sizeof(map[0]); i++) {
		if (!strcmp(src_type, map[i].type)) {
			*ctype = map[i].type;
			return map[i].suffix;
		}
	}
	*ctype = "image/png";
	return ".png";
}

/* metadata=copyright: drops every metadata field but EXIF's Copyright (replaces *img). */
static int keep_copyright(VipsImage **img)
{
	static const char *const drop[] = {
	    "exif-",	    "xmp-data",	   "iptc-data",		 "icc-profile-data",
	    "png-comment-", "gif-comment", "jpeg-thumbnail-data"};
	VipsImage *out = NULL;
	const char *c = NULL;
	char *copyright = NULL;

	if (vips_image_get_typeof(*img, "exif-ifd0-Copyright") &&
	    !vips_image_get_string(*img, "exif-ifd0-Copyright", &c))
		copyright = g_strdup(c);
	if (vips_copy(*img, &out, NULL)) {
		g_free(copyright);
		return -EIO;
	}
	char **fields = vips_image_get_fields(out);
	for (size_t i = 0; fields[i]; i++)
		for (size_t k = 0; k < sizeof(drop) / sizeof(drop[0]); k++)
			if (!strncmp(fields[i], drop[k], strlen(drop[k])))
				vips_image_remove(out, fields[i]);
	g_strfreev(fields);
	if (copyright)
		vips_image_set_string(out, "exif-ifd0-Copyright", copyright);
	g_free(copyright);
	g_object_unref(*img);
	*img = out;
	return 0;
}

/* Resized image per fit/width/height (a new reference in *out). */
static int resize(const struct emu_variant *v, const unsigned char *src, size_t len,
		  VipsImage **out)
{
	const char *fit = v->fit[0] ? v->fit : "scale-down";
	bool both = v->width > 0 && v->height > 0;
	bool crop = both && (!strcmp(fit, "cover") || !strcmp(fit, "crop"));
	bool down = !strcmp(fit, "scale-down") || !strcmp(fit, "crop");
	int w = v->width > 0 ? (int)v->width : RENDER_UNBOUNDED;
	int h = v->height > 0 ? (int)v->height : RENDER_UNBOUNDED;

	if (v->width <= 0 && v->height <= 0) {
		*out = vips_image_new_from_buffer(src, len, "", NULL);
		return *out ? 0 : -EINVAL;
	}
	if (vips_thumbnail_buffer((void *)src, len, out, w, "height", h, "size",
				  down ? VIPS_SIZE_DOWN : VIPS_SIZE_BOTH, "crop",
				  crop ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE, NULL))
		return -EINVAL;
	return 0;
}

/* fit=pad: centres img on a white width x height canvas (replaces *img). */
static int pad(const struct emu_variant *v, VipsImage **img)
{
	double white[4] = {255, 255, 255, 255};
	VipsArrayDouble *bg;
	VipsImage *padded = NULL;
	int bands = vips_image_get_bands(*img), rc;

	if (bands > 4)
		bands = 4;
	bg = vips_array_double_new(white, bands);
	rc = vips_gravity(*img, &padded, VIPS_COMPASS_DIRECTION_CENTRE, (int)v->width,
			  (int)v->height, "extend", VIPS_EXTEND_BACKGROUND, "background", bg, NULL);
	vips_area_unref(VIPS_AREA(bg));
	if (rc)
		return -EIO;
	g_object_unref(*img);
	*img = padded;
	return 0;
}

int emu_render(const struct emu_variant *v, const unsigned char *src, size_t len,
	       unsigned char **out, size_t *outlen, const char **ctype)
{
	const char *suffix = out_format(emu_sniff(src, len), ctype);
	bool strip = !strcmp(v->metadata, "none");
	VipsImage *img = NULL;
	void *buf = NULL;
	size_t n = 0;
	int rc;

	rc = resize(v, src, len, &img);
	if (!rc && !strcmp(v->fit, "pad") && v->width > 0 && v->height > 0)
		rc = pad(v, &img);
	if (!rc && !strcmp(v->metadata, "copyright"))
		rc = keep_copyright(&img);
	if (!rc && vips_image_write_to_buffer(img, suffix, &buf, &n, "strip", strip, NULL))
		rc = -EIO;
	if (img)
		g_object_unref(img);
	if (!rc) {
		*out = malloc(n ? n : 1);
		if (*out) {
			memcpy(*out, buf, n);
			*outlen = n;
		} else {
			rc = -ENOMEM;
		}
	}
	g_free(buf);
	if (rc)
		vips_error_clear();
	return rc;
}

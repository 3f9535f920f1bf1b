/*
 * mkjpeg.c - imagesfs-mkjpeg W H OUT: writes a W x H baseline JPEG (a colour gradient) with
 * libvips, for tests that need a JPEG source. No metadata; tests add an EXIF block
 * themselves (tests/e2e/t_fs_renditions.sh) so its presence does not depend on vips.
 */
#include <stdio.h>
#include <stdlib.h>

#include <vips/vips.h>

int main(int argc, char **argv)
{
	VipsImage *xyz = NULL, *rgb = NULL, *u8 = NULL;
	int w, h, rc = 1;

	if (argc != 4 || (w = atoi(argv[1])) < 1 || (h = atoi(argv[2])) < 1 || w > 10000 ||
	    h > 10000) {
		fprintf(stderr, "usage: imagesfs-mkjpeg WIDTH HEIGHT OUT.jpg\n");
		return 2;
	}
	if (VIPS_INIT(argv[0]))
		return 1;
	/* bands: x, y -> (x, y, x+y) scaled into 0..255 */
	if (!vips_xyz(&xyz, w, h, NULL) && !vips_bandjoin_const1(xyz, &rgb, 0, NULL) &&
	    !vips_linear1(rgb, &u8, 255.0 / (w > h ? w : h), 0, "uchar", TRUE, NULL) &&
	    !vips_image_write_to_file(u8, argv[3], "strip", TRUE, NULL))
		rc = 0;
	else
		fprintf(stderr, "imagesfs-mkjpeg: %s", vips_error_buffer());
	if (u8)
		g_object_unref(u8);
	if (rgb)
		g_object_unref(rgb);
	if (xyz)
		g_object_unref(xyz);
	vips_shutdown();
	return rc;
}

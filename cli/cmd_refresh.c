/*
 * cmd_refresh.c - `imagesfs refresh MOUNT [images|variants|keys|all]`: drops the mount's
 * cached listings (default all) by writing the word to MOUNT/.imagesfs/refresh, so the
 * next ls asks the API at once. The mount checks the word too; its errno is reported.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_cmd_refresh(int argc, char **argv)
{
	static const char *const what[] = {"images", "variants", "keys", "all"};
	if (argc < 2 || argc > 3 || argv[1][0] == '-') {
		fprintf(stderr, "usage: imagesfs refresh MOUNT [images|variants|keys|all]\n");
		return 2;
	}
	const char *w = argc == 3 ? argv[2] : "all";
	size_t i;
	for (i = 0; i < sizeof(what) / sizeof(what[0]) && strcmp(w, what[i]) != 0; i++)
		;
	if (i == sizeof(what) / sizeof(what[0])) {
		fprintf(stderr,
			"imagesfs: cannot refresh '%s': not one of images, variants, keys, "
			"all\n",
			w);
		return 2;
	}
	char line[16];
	snprintf(line, sizeof(line), "%s\n", w);
	return cli_ctl_write(argv[1], "refresh", line) < 0 ? 1 : 0;
}

/*
 * cmd_sync.c - `imagesfs sync MOUNT`: waits until every pending write-back upload and
 * journal entry of the mount is finished (it reads MOUNT/.imagesfs/sync, which answers only
 * then), prints each path that failed to stderr, and exits 1 if any did.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_cmd_sync(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: imagesfs sync MOUNT\n");
		return 2;
	}
	char *text;
	size_t len;
	if (cli_ctl_read(argv[1], "sync", &text, &len) < 0)
		return 1;
	int failed = 0;
	for (char *p = text; p < text + len;) {
		char *nl = memchr(p, '\n', (size_t)(text + len - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
		if (l > 7 && !strncmp(p, "failed ", 7)) {
			fprintf(stderr, "imagesfs: not stored: %.*s\n", (int)(l - 7), p + 7);
			failed++;
		}
		p += l + 1;
	}
	if (failed)
		fprintf(stderr, "imagesfs: %d path%s of '%s' failed\n", failed,
			failed == 1 ? "" : "s", argv[1]);
	free(text);
	return failed ? 1 : 0;
}

/*
 * imagesfs.c - `imagesfs VERB [args]`: dispatch to one verb per file (see cli.h); the
 * helpers the verbs share are in cli_ctl.c.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct cli_verb {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the verb */
	const char *usage;
};

/* One row per verb; each verb's file declares its function here. */
static const struct cli_verb cli_verbs[] = {
    {"import", cli_cmd_import, "import URL MOUNT/images/NAME"},
    {"status", cli_cmd_status, "status [--watch] MOUNT   what the mount is doing"},
    {"refresh", cli_cmd_refresh, "refresh MOUNT [images|variants|keys|all]   list again now"},
    {"sync", cli_cmd_sync, "sync MOUNT   wait for pending uploads; non-zero naming failed paths"},
    {NULL, NULL, NULL},
};

static void cli_usage(FILE *f)
{
	fprintf(f, "usage: imagesfs VERB [ARGS...]\n\nverbs:\n");
	for (const struct cli_verb *v = cli_verbs; v->name; v++)
		fprintf(f, "  %s\n", v->usage);
	fprintf(f, "  --version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		cli_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("imagesfs %s\n", IMAGESFS_VERSION);
		return 0;
	}
	for (const struct cli_verb *v = cli_verbs; v->name; v++)
		if (!strcmp(argv[1], v->name))
			return v->run(argc - 1, argv + 1);
	fprintf(stderr, "imagesfs: unknown verb '%s'\n", argv[1]);
	cli_usage(stderr);
	return 2;
}

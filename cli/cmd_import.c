/*
 * cmd_import.c - `imagesfs import URL MOUNT/images/NAME`: upload an image from a URL.
 *
 * Exactly `touch MOUNT/images/NAME && setfattr -n user.url -v URL MOUNT/images/NAME`: the
 * file is created when missing (a local, empty file, uploaded by nothing), then setting
 * user.url makes the mount upload the image the API fetches from URL, or replace NAME with
 * it (fs/fs_url.c). The setxattr's errno is the upload's. Unlike the other verbs this one
 * works on the path itself, not on .imagesfs/, but it still refuses a path outside the
 * images/ directory of an imagesfs mount. The URL is never printed: it may carry a password.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"

#define IMPORT_XATTR "user.url"

/* Resolves target (whose last component may not exist yet) to a path inside
 * ROOT/images/ of an imagesfs mount; 0, or one line on stderr and -1. */
static int import_path(const char *target, char *out, size_t len)
{
	char dir[PATH_MAX], root[PATH_MAX], rdir[PATH_MAX];
	if ((size_t)snprintf(dir, sizeof(dir), "%s", target) >= sizeof(dir)) {
		fprintf(stderr, "imagesfs: path '%s' too long\n", target);
		return -1;
	}
	char *slash = strrchr(dir, '/');
	const char *base = target + (slash ? (size_t)(slash - dir) + 1 : 0);
	if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
		fprintf(stderr, "imagesfs: '%s' does not name a file\n", target);
		return -1;
	}
	if (slash == dir)
		dir[1] = '\0'; /* "/NAME" */
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (cli_mount_of(dir, root, sizeof(root)) || !realpath(dir, rdir))
		return -1;
	size_t rl = strlen(root);
	int in_images = strncmp(rdir, root, rl) == 0 && strncmp(rdir + rl, "/images", 7) == 0 &&
			(rdir[rl + 7] == '\0' || rdir[rl + 7] == '/');
	if (!in_images) {
		fprintf(stderr, "imagesfs: '%s' is not under '%s/images/'\n", target, root);
		return -1;
	}
	if ((size_t)snprintf(out, len, "%s/%s", rdir, base) >= len) {
		fprintf(stderr, "imagesfs: path '%s' too long\n", target);
		return -1;
	}
	return 0;
}

static const char *import_hint(int err)
{
	switch (err) {
	case EINVAL:
		return " (not an http:// or https:// URL, a URL the API cannot fetch, or not an "
		       "image: the mount's log has the API's message)";
	case EBUSY:
		return " (the file is being written)";
	case ENOTSUP:
		return " (not an image file)";
	default:
		return "";
	}
}

int cli_cmd_import(int argc, char **argv)
{
	char path[PATH_MAX];
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf("usage: imagesfs import URL MOUNT/images/NAME\n\n"
		       "Uploads the image the API fetches from URL (http:// or https://) as NAME,\n"
		       "creating the file when missing or replacing the image NAME. Exactly\n"
		       "touch + setfattr -n user.url -v URL MOUNT/images/NAME.\n");
		return 0;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: imagesfs import URL MOUNT/images/NAME\n");
		return 2;
	}
	const char *url = argv[1];
	if (import_path(argv[2], path, sizeof(path)))
		return 1;
	int created = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		created = 1;
		if (close(fd)) {
			fprintf(stderr, "imagesfs: cannot create '%s': %s\n", path,
				strerror(errno));
			unlink(path);
			return 1;
		}
	} else if (errno != EEXIST) {
		fprintf(stderr, "imagesfs: cannot create '%s': %s\n", path, strerror(errno));
		return 1;
	}
	if (setxattr(path, IMPORT_XATTR, url, strlen(url), 0) == 0)
		return 0;
	int err = errno;
	if (created)
		unlink(path); /* nothing was stored: leave nothing behind */
	fprintf(stderr, "imagesfs: cannot import into '%s': %s%s\n", path, strerror(err),
		import_hint(err));
	return 1;
}

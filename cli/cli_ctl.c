/*
 * cli_ctl.c - what every verb shares to find a mount and use its control directory (see
 * cli.h): is this path an imagesfs mount (/proc/self/mountinfo), and read or write one
 * control file of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CLI_CTL_MAX (16 * 1024 * 1024) /* cap of one control file read */

/* mountinfo field 5 is the mount point (octal escapes), after " - " comes the fstype. */
static int cli_is_imagesfs_mount(const char *real)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192];
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], *sep = strstr(line, " - ");
		char dec[PATH_MAX];
		size_t j = 0;
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		for (size_t i = 0; mnt[i] && j + 1 < sizeof(dec); i++) {
			if (mnt[i] == '\\' && mnt[i + 1] && mnt[i + 2] && mnt[i + 3]) {
				dec[j++] = (char)strtol(
				    (char[]){mnt[i + 1], mnt[i + 2], mnt[i + 3], 0}, NULL, 8);
				i += 3;
			} else {
				dec[j++] = mnt[i];
			}
		}
		dec[j] = '\0';
		found = strcmp(dec, real) == 0 && strncmp(sep + 3, "fuse.imagesfs ", 14) == 0;
	}
	fclose(f);
	return found;
}

int cli_ctl_path(const char *mount, const char *name, char *buf, size_t len)
{
	char real[PATH_MAX];
	if (!realpath(mount, real) || !cli_is_imagesfs_mount(real)) {
		fprintf(stderr, "imagesfs: '%s' is not an imagesfs mount\n", mount);
		return -1;
	}
	if ((size_t)snprintf(buf, len, "%s/%s/%s", real, CLI_CTL_DIR, name) >= len) {
		fprintf(stderr, "imagesfs: path of '%s' too long\n", mount);
		return -1;
	}
	return 0;
}

int cli_mount_of(const char *path, char *root, size_t len)
{
	char real[PATH_MAX];
	if (!realpath(path, real)) {
		fprintf(stderr, "imagesfs: cannot resolve '%s': %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cli_is_imagesfs_mount(real)) {
			if ((size_t)snprintf(root, len, "%s", real) < len)
				return 0;
			break;
		}
		char *slash = strrchr(real, '/');
		if (!slash || slash == real)
			break;
		*slash = '\0';
	}
	fprintf(stderr, "imagesfs: '%s' is not inside an imagesfs mount\n", path);
	return -1;
}

int cli_ctl_read(const char *mount, const char *name, char **out, size_t *len)
{
	char path[PATH_MAX];
	if (cli_ctl_path(mount, name, path, sizeof(path)))
		return -1;
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "imagesfs: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	ssize_t r = 0;
	while (b && (r = read(fd, b + n, cap - n - 1)) > 0) {
		n += (size_t)r;
		if (n + 1 == cap) {
			char *nb = cap < CLI_CTL_MAX ? realloc(b, cap * 2) : NULL;
			if (!nb) {
				free(b);
				b = NULL;
				errno = EFBIG;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	int err = b && r < 0 ? errno : b ? 0 : errno ? errno : ENOMEM;
	close(fd);
	if (err) {
		free(b);
		fprintf(stderr, "imagesfs: cannot read '%s': %s\n", path, strerror(err));
		return -1;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

int cli_ctl_write(const char *mount, const char *name, const char *data)
{
	char path[PATH_MAX];
	if (cli_ctl_path(mount, name, path, sizeof(path)))
		return -1;
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0) {
		fprintf(stderr, "imagesfs: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	size_t n = strlen(data);
	ssize_t w = write(fd, data, n);
	int err = w < 0 ? errno : (size_t)w != n ? EIO : 0;
	if (close(fd) && !err)
		err = errno;
	if (err) {
		fprintf(stderr, "imagesfs: cannot write '%s': %s\n", path, strerror(err));
		return -1;
	}
	return 0;
}

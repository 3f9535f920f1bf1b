/*
 * cli.h - the `imagesfs` command: small verbs that talk to a running mount only through the
 * files of its control directory MOUNT/.imagesfs/ (never through the API, never with
 * credentials).
 *
 * Each verb is one cli_cmd_* function in its own file, listed in the table in imagesfs.c.
 * A verb returns the process exit status: 0 on success, 1 on a failure it reported, 2 on a
 * usage error.
 */
#ifndef IMAGESFS_CLI_H
#define IMAGESFS_CLI_H

#include <stddef.h>

#define CLI_CTL_DIR ".imagesfs"

/* The control-directory helpers every verb shares (cli_ctl.c). */

/* Checks that `mount` is the root of an imagesfs mount (fstype fuse.imagesfs in
 * /proc/self/mountinfo) and writes "<mount>/.imagesfs/<name>" to buf. Returns 0, or prints
 * one line to stderr ("imagesfs: '<mount>' is not an imagesfs mount") and returns -1. */
int cli_ctl_path(const char *mount, const char *name, char *buf, size_t len);

/* Finds the imagesfs mount that holds `path` (which must exist; symlinks resolved): writes
 * its root to buf and returns 0, or prints one line to stderr ("imagesfs: '<path>' is not
 * inside an imagesfs mount", or why it cannot be resolved) and returns -1. For verbs that
 * work on a file of the mount itself rather than on .imagesfs/. */
int cli_mount_of(const char *path, char *root, size_t len);

/* Reads the control file `name` of `mount` whole into a NUL-terminated malloc'd buffer
 * (*out, caller frees; *len without the NUL). Returns 0, or prints one line naming the file
 * and the error and returns -1 (*out untouched). The read may block while the mount works
 * (a control file may answer only when what it reports is finished). */
int cli_ctl_read(const char *mount, const char *name, char **out, size_t *len);

/* Writes `data` to the control file `name` of `mount` in one write and closes it; the
 * mount's answer is the write's (or close's) error. Returns 0, or prints one line and
 * returns -1. */
int cli_ctl_write(const char *mount, const char *name, const char *data);

/* Verbs (argv[0] is the verb). */
int cli_cmd_import(int argc, char **argv); /* cmd_import.c */
int cli_cmd_status(int argc, char **argv);  /* cmd_status.c */
int cli_cmd_refresh(int argc, char **argv); /* cmd_refresh.c */
int cli_cmd_sync(int argc, char **argv);    /* cmd_sync.c */

#endif

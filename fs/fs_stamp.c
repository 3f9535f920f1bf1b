/*
 * fs_stamp.c - the stamp: an image's mtime and the size of its bytes, kept in one reserved
 * key of its metadata object (api_stamp.h), since the API stores nothing but `uploaded`.
 * fs_stamp_meta builds the metadata an upload or edit sends; fs_stamp_apply_locked reads the
 * stamp of an API answer into the node. When and how mtimes are sent is fs_times.c's.
 */
#include "fs.h"

#include <errno.h>

#include "api_stamp.h"

#define NS 1000000000LL

static void stamp_mtime(struct api_stamp *st, int64_t ns)
{
	int64_t sec = ns / NS, nsec = ns % NS;
	if (nsec < 0) {
		nsec += NS;
		sec--;
	}
	st->has_mtime = 1;
	st->mtime_sec = sec;
	st->mtime_nsec = (int32_t)nsec;
}

int fs_stamp_meta(struct fs_ctx *fs, const char *user, int has_mtime, int64_t mtime_ns,
		  int64_t size, const char *path, char **out, int *stamped)
{
	struct api_stamp st;
	api_stamp_init(&st);
	if (!fs->cfg.stamp_off) {
		if (has_mtime)
			stamp_mtime(&st, mtime_ns);
		st.size = size;
	}
	if (stamped)
		*stamped = 0;
	int rc = api_stamp_join(user, &st, out);
	if (rc == 0) {
		if (stamped)
			*stamped = !api_stamp_empty(&st);
		return 0;
	}
	if (rc != -E2BIG || api_stamp_empty(&st))
		return rc;
	fs_log(FS_LOG_WARN,
	       "keeping the mtime and size of '%s' local: its metadata leaves no room for the "
	       "stamp (1024 bytes in all)",
	       path ? path : "?");
	return api_stamp_join(user, NULL, out);
}

int fs_stamp_apply_locked(struct fs_node *n, const struct api_image *img, char **user)
{
	struct api_stamp st;
	int rc = api_stamp_split(img->meta_json, &st, user);
	if (rc < 0)
		return rc;
	int64_t ns = st.mtime_sec * NS + st.mtime_nsec;
	if ((n->flags & FS_NF_TIMES) && st.has_mtime && ns == n->mtime_ns)
		n->flags &= ~FS_NF_TIMES; /* the image now stores the mtime set here */
	if (!(n->flags & FS_NF_TIMES)) {
		n->flags &= ~FS_NF_MTIME;
		if (st.has_mtime) {
			n->mtime_ns = ns;
			n->flags |= FS_NF_MTIME;
		}
	}
	if (st.size >= 0 && st.size <= UINT32_MAX) {
		n->size = (uint32_t)st.size;
		n->flags |= FS_NF_SIZE;
	}
	return 0;
}

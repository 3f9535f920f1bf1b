/*
 * fs_deliver.c - signed delivery URLs for the mount (reference §5, §9.2).
 *
 * A private image (requireSignedURLs) is delivered only with a token made from one of the
 * account's signing keys, so user.variants shows such an image's URLs signed (valid for
 * url_ttl seconds from the getxattr), except through variants that never require one.
 * The key and the variants' flags come from the keys/ and variants/ listings, which are
 * cached for dir_ttl and refreshed like their directories (a key deleted through keys/ is
 * gone at once), so signing costs no request while they are fresh. A key's value is a
 * secret: it is copied out of the table only for the signing call and never logged.
 */
#include "fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_doc.h"

/* Picks the key node: sign_key=, else "default", else the first. */
static struct fs_node *key_node_locked(struct fs_ctx *fs)
{
	struct fs_node *dir = fs->fixed[FS_INO_KEYS];
	if (fs->cfg.sign_key)
		return fs_node_child_locked(fs, dir, fs->cfg.sign_key);
	struct fs_node *n = fs_node_child_locked(fs, dir, "default");
	for (struct fs_node *c = dir->u.first_child; !n && c; c = c->next)
		if (c->kind == FS_K_KEY && c->u.doc && !(c->flags & FS_NF_PENDING))
			n = c;
	return n;
}

int fs_sign_key(struct fs_ctx *fs, char **value)
{
	int rc = fs_keys_refresh(fs, 0);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = key_node_locked(fs);
	char *v = n && n->kind == FS_K_KEY && n->u.doc ? strdup(n->u.doc) : NULL;
	int missing = !n || n->kind != FS_K_KEY || !n->u.doc;
	pthread_mutex_unlock(&fs->lock);
	if (missing)
		return -ENOKEY;
	if (!v)
		return -ENOMEM;
	v[strcspn(v, "\n")] = '\0';
	*value = v;
	return 0;
}

int fs_variant_info(struct fs_ctx *fs, const char *name, char **options, int *never)
{
	int rc = fs_variants_refresh(fs, 0);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct fs_node *n = fs_node_child_locked(fs, fs->fixed[FS_INO_VARIANTS], name);
	char *doc = n && n->kind == FS_K_VAR && n->u.doc ? strdup(n->u.doc) : NULL;
	int missing = !n || n->kind != FS_K_VAR || !n->u.doc;
	pthread_mutex_unlock(&fs->lock);
	if (missing)
		return -ENOENT;
	if (!doc)
		return -ENOMEM;
	char *opts = NULL;
	rc = api_variant_doc_parse(doc, strlen(doc), &opts, never);
	free(doc);
	if (rc < 0)
		return rc;
	if (*never < 0)
		*never = 0;
	if (options)
		*options = opts;
	else
		free(opts);
	return 0;
}

int fs_sign_one(struct fs_ctx *fs, const char *key, const char *url, char *out, size_t outsz)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return api_sign_url(url, key, (int64_t)now.tv_sec + fs->cfg.url_ttl, out, outsz);
}

/* Appends line (signed when its variant requires it) to *acc. */
static int sign_line(struct fs_ctx *fs, const char *key, const char *line, char **acc, size_t *len)
{
	char signed_url[API_MAX_SIGNED_URL];
	const char *var = strrchr(line, '/');
	int never = 0, rc = var ? fs_variant_info(fs, var + 1, NULL, &never) : -EINVAL;
	if (rc == -ENOENT)
		never = 0; /* a variant not listed yet: signing is the safe side */
	else if (rc < 0)
		return rc;
	const char *out = line;
	if (!never) {
		if ((rc = fs_sign_one(fs, key, line, signed_url, sizeof(signed_url))) < 0)
			return rc;
		out = signed_url;
	}
	size_t l = strlen(out);
	char *p = realloc(*acc, *len + l + 2);
	if (!p)
		return -ENOMEM;
	memcpy(p + *len, out, l);
	p[*len + l] = '\n';
	p[*len + l + 1] = '\0';
	*acc = p;
	*len += l + 1;
	return 0;
}

int fs_variants_sign(struct fs_ctx *fs, const char *path, char **urls)
{
	char *key = NULL, *acc = NULL, *copy = strdup(*urls), *save = NULL;
	size_t len = 0;
	int rc = copy ? fs_sign_key(fs, &key) : -ENOMEM;
	for (char *line = rc ? NULL : strtok_r(copy, "\n", &save); line && !rc;
	     line = strtok_r(NULL, "\n", &save))
		rc = sign_line(fs, key, line, &acc, &len);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	free(copy);
	if (rc < 0) {
		free(acc);
		fs_log(FS_LOG_WARN, "imagesfs: cannot sign the delivery URLs of '%s': %s%s", path,
		       strerror(-rc),
		       rc == -ENOKEY ? " (no such signing key: see keys/ and -o sign_key)" : "");
		return rc;
	}
	free(*urls);
	*urls = acc ? acc : strdup("");
	return *urls ? 0 : -ENOMEM;
}

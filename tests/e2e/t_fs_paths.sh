#!/usr/bin/env bash
# Sub-paths, rename, replace (and restore on a failed replace).
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"
I=$M/images
api_get() { # id -> JSON of the image (or nothing)
	local enc
	enc=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1")
	curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
		"$EMU_URL/accounts/$ACCOUNT/images/v1/$enc"
}

log "mkdir, cp -r into a sub-path, ids with '/'"
mkdir "$I/album" || fail "mkdir"
[[ -d $I/album ]] || fail "album is not a directory"
mkdir -p "$E2E_T/photos/deep"
make_png "$E2E_T/photos/a.png" 8 8 1
make_jpeg "$E2E_T/photos/b.jpg" 2
make_png "$E2E_T/photos/deep/c.png" 9 9 3
cp -r "$E2E_T/photos" "$I/" || fail "cp -r"
for f in a.png b.jpg deep/c.png; do
	cmp "$E2E_T/photos/$f" "$I/photos/$f" || fail "photos/$f differs"
	api_get "photos/$f" | grep -q "\"id\":\"photos/$f\"" || fail "id photos/$f not in the API"
done
expect_eq "photos listing" "$(ls "$I/photos" | tr '\n' ' ')" "a.png b.jpg deep "
expect_errno ENOTEMPTY "os.rmdir('$I/photos')"
rmdir "$I/album" || fail "rmdir of an empty local dir"
[[ -e $I/album ]] && fail "album still there"

log "mv keeps metadata and creator, the old id goes"
setfattr -n user.metadata -v '{"owner":"ann"}' "$I/photos/a.png" || fail "setfattr metadata"
setfattr -n user.creator -v "ann" "$I/photos/a.png" || fail "setfattr creator"
mv "$I/photos/a.png" "$I/moved.png" || fail "mv"
cmp "$E2E_T/photos/a.png" "$I/moved.png" || fail "moved bytes"
expect_eq "moved metadata" "$(getfattr --absolute-names --only-values -n user.metadata "$I/moved.png")" '{"owner":"ann"}'
expect_eq "moved creator" "$(getfattr --absolute-names --only-values -n user.creator "$I/moved.png")" ann
api_get moved.png | grep -q '"creator":"ann"' || fail "creator not in the API after mv"
api_get photos/a.png >/dev/null 2>&1 && fail "old id still in the API"
[[ -e $I/photos/a.png ]] && fail "old name still there"
expect_errno EEXIST "
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, b'$I/photos/b.jpg', -100, b'$I/moved.png', 1) != 0:
    raise OSError(ctypes.get_errno(), 'renameat2')"
expect_errno EINVAL "
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, b'$I/photos/b.jpg', -100, b'$I/moved.png', 2) != 0:
    raise OSError(ctypes.get_errno(), 'renameat2')"
expect_errno EXDEV "os.rename('$I/moved.png', '$M/variants/moved')"

log "mv onto an existing image replaces it, keeping the source's attributes"
make_png "$E2E_T/t.png" 5 5 7
cp "$E2E_T/t.png" "$I/target.png" || fail "cp target"
mv "$I/photos/b.jpg" "$I/target.png" || fail "mv onto existing"
cmp "$E2E_T/photos/b.jpg" "$I/target.png" || fail "replaced bytes after mv"
[[ -e $I/photos/b.jpg ]] && fail "source of mv remains"
cat "$E2E_T/t.png" >"$I/target.png" || fail "cat > onto an existing image"
cmp "$E2E_T/t.png" "$I/target.png" || fail "replaced bytes after cat >"

log "cp onto an existing image replaces the bytes and keeps its metadata"
setfattr -n user.metadata -v '{"keep":1}' "$I/moved.png" || fail "setfattr"
make_png "$E2E_T/new.png" 12 12 9
cp "$E2E_T/new.png" "$I/moved.png" || fail "cp onto existing"
cmp "$E2E_T/new.png" "$I/moved.png" || fail "bytes not replaced"
expect_eq "kept metadata" "$(getfattr --absolute-names --only-values -n user.metadata "$I/moved.png")" '{"keep":1}'
api_get moved.png | grep -q '"keep":1' || fail "metadata not kept in the API"

log "a failed replace keeps the old image"
echo "this is not an image" >"$E2E_T/bad.png"
cp "$E2E_T/bad.png" "$I/moved.png" 2>/dev/null && fail "cp of text onto an image succeeded"
cmp "$E2E_T/new.png" "$I/moved.png" || fail "old bytes gone after a failed replace"
api_get moved.png | grep -q '"keep":1' || fail "old image not restored in the API"
expect_eq "restored metadata" "$(getfattr --absolute-names --only-values -n user.metadata "$I/moved.png")" '{"keep":1}'
grep -q "restored the previous 'images/moved.png'" "${FS_LOG[$M]}" || fail "no restore log line"

log "open for writing without O_TRUNC is refused"
expect_errno EPERM "os.open('$I/moved.png', os.O_WRONLY)"
expect_errno EPERM "os.open('$I/moved.png', os.O_WRONLY|os.O_APPEND)"

log "directory rename: EXDEV, so mv copies image by image"
mkdir -p "$E2E_T/d1"
make_png "$E2E_T/d1/x.png" 6 6 4
cp -r "$E2E_T/d1" "$I/" || fail "cp -r d1"
expect_errno EXDEV "os.rename('$I/d1', '$I/d2')"
mv "$I/d1" "$I/d2" || fail "mv of a directory"
cmp "$E2E_T/d1/x.png" "$I/d2/x.png" || fail "d2/x.png"
[[ -e $I/d1 ]] && fail "d1 remains after mv"
api_get d2/x.png >/dev/null || fail "d2/x.png not in the API"

log "the changes are in a fresh listing of another mount"
M2=$E2E_T/mnt2
mount_fs "$M2" "cache_dir=$E2E_T/cache2"
expect_eq "second mount" "$(cd "$M2/images" && find . -type f | sort | tr '\n' ' ')" \
	"./d2/x.png ./moved.png ./photos/deep/c.png ./target.png "
umount_fs "$M2"
umount_fs "$M"
echo PASS

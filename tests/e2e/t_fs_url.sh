#!/usr/bin/env bash
# Upload from a URL: setfattr -n user.url on a touched file uploads what the API fetches
# (byte-exact, attributes and mtime carried, one upload request); refusals of the API are EINVAL with
# the path and the API's message in the log and nothing stored (over 10 MB: EFBIG);
# user.url on an uploaded image replaces it (and keeps it when the new URL fails); user.url
# is write-only; only http(s) URLs, refused without a request; `imagesfs import` does the
# same.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"
I=$M/images
LOG=${FS_LOG[$M]}
W=$E2E_T/www
mkdir -p "$W"
make_png "$W/a.png" 12 12 1
make_png "$W/b.png" 20 10 2
echo "this is not an image" >"$W/note.txt"
head -c $((10 * 1024 * 1024 + 1)) /dev/zero >"$W/big.png"

# A loopback origin the emulator fetches from (it allows loopback: tests/emulator/README.md).
# shellcheck source=tests/e2e/origin.sh
source "$(dirname "$0")/origin.sh"
url_cleanup() {
	local rc=$?
	kill "$ORIGIN_PID" 2>/dev/null
	(exit "$rc") # e2e_cleanup exits with $?
	e2e_cleanup
}
trap url_cleanup EXIT
origin_start "$W" "$E2E_T/http.out" || fail "python http.server did not start"
O=http://127.0.0.1:$ORIGIN_PORT

api_get() { # api_get PATH OUT: GET of the API (token from the environment); HTTP status
	curl -sS -o "$2" -w '%{http_code}' -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
		"$EMU_URL/accounts/$ACCOUNT/images/v1/$1"
}
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["result"]; print(eval(sys.argv[2]))' "$@"; }
gx() { getfattr --absolute-names --only-values -n "$1" "$2"; }

log "touch + setfattr user.url: the image from the URL, with the attributes set before"
touch "$I/u1" || fail "touch"
setfattr -n user.metadata -v '{"k":"v"}' "$I/u1" || fail "metadata on the new file"
setfattr -n user.creator -v alice "$I/u1" || fail "creator on the new file"
touch -d @1577934245 "$I/u1" || fail "touch -d on the new file"
emu_stats_reset
setfattr -n user.url -v "$O/a.png" "$I/u1" || fail "setfattr user.url"
expect_eq "upload requests" "$(emu_op images.upload)" 1
expect_eq "requests in all" "$(emu_total)" 1
expect_eq "blob status" "$(api_get u1/blob "$E2E_T/blob")" 200
cmp -s "$E2E_T/blob" "$W/a.png" || fail "API blob differs from the URL's bytes"
expect_eq "image status" "$(api_get u1 "$E2E_T/img")" 200
expect_eq "metadata carried" "$(json "$E2E_T/img" 'd["meta"]["k"]')" v
json "$E2E_T/img" 'd["meta"]["imagesfs"]' | grep -q ' m=1577934245\.' ||
	fail "mtime not in the stamp: $(json "$E2E_T/img" 'd["meta"]')"
expect_eq "creator carried" "$(json "$E2E_T/img" 'd.get("creator")')" alice
cmp -s "$I/u1" "$W/a.png" || fail "read through the mount differs from the URL's bytes"
expect_eq "size after the read" "$(stat -c %s "$I/u1")" "$(stat -c %s "$W/a.png")"
expect_eq "metadata through the mount" "$(gx user.metadata "$I/u1")" '{"k":"v"}'
expect_eq "mtime carried" "$(stat -c %Y "$I/u1")" 1577934245

log "user.url is write-only"
expect_errno ENODATA "os.getxattr('$I/u1', 'user.url')"
getfattr -n user.url "$I/u1" >/dev/null 2>&1 && fail "getfattr -n user.url succeeded"
python3 -c 'import os,sys; sys.exit("user.url" in os.listxattr(sys.argv[1]))' "$I/u1" ||
	fail "user.url is listed"

log "URLs the API refuses: EINVAL, the path and the API's message in the log, nothing stored"
check_refused() { # NAME URL MESSAGE-IN-LOG
	touch "$I/$1" || fail "touch $1"
	emu_stats_reset
	expect_errno EINVAL "os.setxattr('$I/$1', 'user.url', b'$2')"
	expect_eq "upload requests for $1" "$(emu_op images.upload)" 1
	expect_eq "$1 stored" "$(api_get "$1" "$E2E_T/img")" 404
	grep -F "cannot upload 'images/$1'" "$LOG" | grep -qF "$3" ||
		fail "no log line for $1 with '$3': $(tail -n 3 "$LOG")"
	expect_eq "$1 still a local empty file" "$(stat -c %s "$I/$1")" 0
}
check_refused missing "$O/missing.png" "Failed to fetch image from URL"
check_refused text "$O/note.txt" "Unsupported image format"

log "an image over 10 MB at the URL: EFBIG, nothing stored"
touch "$I/big" || fail "touch big"
expect_errno EFBIG "os.setxattr('$I/big', 'user.url', b'$O/big.png')"
expect_eq "big stored" "$(api_get big "$E2E_T/img")" 404

log "only http:// and https://, refused without a request"
touch "$I/scheme" || fail "touch scheme"
emu_stats_reset
for u in ftp://x file:///etc/passwd http:// https:///path 'http://a b' gopher://h/x; do
	expect_errno EINVAL "os.setxattr('$I/scheme', 'user.url', b'$u')"
done
expect_errno E2BIG "os.setxattr('$I/scheme', 'user.url', b'http://h/' + b'x' * 4100)"
expect_eq "requests for refused URLs" "$(emu_total)" 0
grep -F "cannot upload 'images/scheme' from a URL: only http:// and https://" "$LOG" >/dev/null ||
	fail "no log line for ftp://"

log "user.url on an uploaded image replaces it, keeping its attributes"
emu_stats_reset
setfattr -n user.url -v "$O/b.png" "$I/u1" || fail "replace from a URL"
expect_eq "upload requests of the replace" "$(emu_op images.upload)" 1
expect_eq "delete requests of the replace" "$(emu_op images.delete)" 1
api_get u1/blob "$E2E_T/blob" >/dev/null
cmp -s "$E2E_T/blob" "$W/b.png" || fail "API blob is not the new URL's bytes"
cmp -s "$I/u1" "$W/b.png" || fail "read through the mount is not the new image"
api_get u1 "$E2E_T/img" >/dev/null
expect_eq "metadata kept" "$(json "$E2E_T/img" 'd["meta"]["k"]')" v
expect_eq "mtime kept, as by cp onto an image" "$(stat -c %Y "$I/u1")" 1577934245
expect_eq "creator kept" "$(json "$E2E_T/img" 'd.get("creator")')" alice

log "a replace from a URL that fails keeps the old image"
expect_errno EINVAL "os.setxattr('$I/u1', 'user.url', b'$O/note.txt')"
expect_eq "old image after a failed replace" "$(api_get u1/blob "$E2E_T/blob")" 200
cmp -s "$E2E_T/blob" "$W/b.png" || fail "old bytes not restored"
cmp -s "$I/u1" "$W/b.png" || fail "mount does not read the restored image"
expect_eq "metadata after a failed replace" "$(gx user.metadata "$I/u1")" '{"k":"v"}'

log "a file being written: EBUSY"
python3 - "$I/busy" "$O/a.png" <<'EOF' || fail "EBUSY while written"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
try:
    os.setxattr(sys.argv[1], "user.url", sys.argv[2].encode())
    sys.exit("setxattr succeeded on a file being written")
except OSError as e:
    if e.errno != errno.EBUSY:
        sys.exit(f"expected EBUSY, got {errno.errorcode[e.errno]}")
finally:
    os.close(fd)
EOF

log "imagesfs import"
IMP=$IMAGESFS_BIN/imagesfs
emu_stats_reset
"$IMP" import "$O/a.png" "$I/imp" || fail "import into a new name"
expect_eq "import: upload requests" "$(emu_op images.upload)" 1
api_get imp/blob "$E2E_T/blob" >/dev/null
cmp -s "$E2E_T/blob" "$W/a.png" || fail "imported bytes differ"
mkdir "$I/album" || fail "mkdir"
(cd "$I/album" && "$IMP" import "$O/b.png" pic) || fail "import with a relative path"
cmp -s "$I/album/pic" "$W/b.png" || fail "album/pic differs"
"$IMP" import "$O/b.png" "$I/imp" || fail "import onto an existing image"
cmp -s "$I/imp" "$W/b.png" || fail "import did not replace"
"$IMP" import "$O/missing.png" "$I/imp2" 2>"$E2E_T/err" && fail "import of a 404 succeeded"
grep -q "cannot import into '$I/imp2': Invalid argument" "$E2E_T/err" ||
	fail "import message: $(cat "$E2E_T/err")"
[[ -e $I/imp2 ]] && fail "a failed import left a file"
expect_eq "imp2 stored" "$(api_get imp2 "$E2E_T/img")" 404
"$IMP" import ftp://x "$I/imp3" 2>/dev/null && fail "import of ftp:// succeeded"
"$IMP" import "$O/a.png" "$E2E_T/elsewhere" 2>"$E2E_T/err" && fail "import outside a mount succeeded"
grep -q "is not inside an imagesfs mount" "$E2E_T/err" || fail "outside message: $(cat "$E2E_T/err")"
"$IMP" import "$O/a.png" "$M/stats2" 2>"$E2E_T/err" && fail "import outside images/ succeeded"
grep -q "is not under '$M/images/'" "$E2E_T/err" || fail "not-images message: $(cat "$E2E_T/err")"
"$IMP" import "$O/a.png" 2>/dev/null
expect_eq "usage exit" $? 2

log "documented in --help"
"$IMAGESFS_BIN/mount.imagesfs" --help | grep -q "setfattr -n user.url" || fail "mount.imagesfs --help"
"$IMP" --help | grep -q "import URL MOUNT/images/NAME" || fail "imagesfs --help"

umount_fs "$M"
echo PASS

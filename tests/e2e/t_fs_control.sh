#!/usr/bin/env bash
# The control directory .imagesfs/: status counters move by exactly what a scripted
# sequence does (uploads, reads, failures) and reading them costs no API request; errors
# lists each failure with its path and the API's message; writing `images` to refresh (or
# SIGHUP) makes an image uploaded elsewhere visible at once under dir_ttl=3600; nothing in
# .imagesfs can be written but refresh, it is not counted by df -i, and it never reaches
# the API.
# shellcheck disable=SC2010,SC2119 # ls is under test
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
emu_seed 3 r- 200
M=$E2E_T/mnt C=$E2E_T/mnt/.imagesfs
mount_fs "$M" "dir_ttl=3600"
# st PATH: a number from the status document ("uploads.done", "requests.by_op.blob")
st() {
	python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d = d[k]
print(d)' "$C/status" "$1"
}
ls "$M/images" >/dev/null
for i in 1 2 3 4 5; do make_png "$E2E_T/ok$i.png" 8 8 "$i"; done
printf 'not an image\n' >"$E2E_T/bad.png"

log "status is one JSON document, read with no API request"
emu_stats_reset
for _ in 1 2 3; do python3 -m json.tool "$C/status" >/dev/null || fail "status is not JSON"; done
cat "$C/errors" >/dev/null || fail "read errors"
expect_eq "requests to read status and errors" "$(emu_total)" 0
for k in uploads.done uploads.in_flight uploads.queued uploads.failed bytes.up bytes.down \
	requests.total requests.http_429 requests.by_host requests.by_op.upload budget.left \
	batch_tokens journal_pending cache.bytes cache.cap cache.hit_rate listings.images.age_s \
	options.dir_ttl version; do
	st "$k" >/dev/null 2>&1 || fail "status has no $k"
done
expect_eq "dir_ttl in the options" "$(st options.dir_ttl)" 3600
grep -q "$IMAGESFS_EMULATOR_TOKEN" "$C/status" && fail "the token is in the status document"

log "counters move by exactly 5 uploads, 3 reads, 2 failures"
declare -A b
for k in uploads.done uploads.failed uploads.in_flight requests.by_op.upload \
	requests.by_op.blob cache.misses errors requests.total; do b[$k]=$(st "$k"); done
emu_stats_reset
for i in 1 2 3 4 5; do cp "$E2E_T/ok$i.png" "$M/images/ok$i.png" || fail "cp ok$i"; done
for n in r-000000 r-000001 r-000002; do cat "$M/images/$n" >/dev/null || fail "read $n"; done
for i in 1 2; do cp "$E2E_T/bad.png" "$M/images/bad$i.png" 2>/dev/null && fail "bad$i uploaded"; done
server=$(emu_total)
delta() { echo $(($(st "$1") - b[$1])); }
expect_eq "uploads done" "$(delta uploads.done)" 5
expect_eq "uploads failed" "$(delta uploads.failed)" 2
expect_eq "uploads in flight" "$(delta uploads.in_flight)" 0
expect_eq "upload requests" "$(delta requests.by_op.upload)" 7
expect_eq "blob requests (reads)" "$(delta requests.by_op.blob)" 3
expect_eq "cache misses" "$(delta cache.misses)" 3
expect_eq "errors counted" "$(delta errors)" 2
expect_eq "requests the mount counted vs. the server saw" "$(delta requests.total)" "$server"
expect_eq "requests to read the counters" "$(emu_total)" "$server"

log "errors: one line per failure with path, errno, HTTP status, API code and message"
for i in 1 2; do
	grep -E "^[0-9T:.-]+Z upload images/bad$i.png EINVAL http=415 code=5455 Unsupported image format$" \
		"$C/errors" >/dev/null || fail "no error line for bad$i.png: $(cat "$C/errors")"
done
expect_eq "error lines" "$(wc -l <"$C/errors")" 2

log "refresh: an image uploaded elsewhere shows at once under dir_ttl=3600"
up_direct() {
	make_png "$E2E_T/$1.png" 9 9 7
	curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" -F "file=@$E2E_T/$1.png" \
		-F "id=$1" "$EMU_URL/accounts/$ACCOUNT/images/v1" >/dev/null || fail "direct upload $1"
}
up_direct elsewhere1
ls "$M/images" | grep -qx elsewhere1 && fail "seen before refresh: the listing was not cached"
echo images >"$C/refresh" || fail "write images to refresh"
ls "$M/images" | grep -qx elsewhere1 || fail "not seen after writing images to refresh"
cmp -s "$E2E_T/elsewhere1.png" "$M/images/elsewhere1" || fail "bytes after refresh"
up_direct elsewhere2
ls "$M/images" | grep -qx elsewhere2 && fail "seen before SIGHUP"
kill -HUP "${FS_PID[$M]}" || fail "kill -HUP"
# the signal is handled asynchronously: poll for up to 3 s
for ((i = 0; i < 30; i++)); do
	ls "$M/images" | grep -qx elsewhere2 && break
	sleep 0.1
done
((i < 30)) || fail "not seen after kill -HUP"
mountpoint -q "$M" || fail "SIGHUP unmounted"

log ".imagesfs cannot be written except refresh"
emu_stats_reset
expect_errno EACCES "open('$C/status','w')"
expect_errno EACCES "open('$C/errors','a')"
expect_errno EACCES "open('$C/new','w')"
expect_errno EACCES "os.mkdir('$C/d')"
expect_errno EACCES "os.unlink('$C/status')"
expect_errno EACCES "os.rmdir('$C')"
expect_errno EACCES "os.rename('$C/status','$C/s2')"
expect_errno EACCES "os.rename('$C','$M/ctl')"
expect_errno EPERM "os.chmod('$C/status',0o666)"
expect_errno EOPNOTSUPP "os.setxattr('$C/status','user.x',b'1')"
expect_errno EINVAL "os.write(os.open('$C/refresh',os.O_WRONLY),b'everything\n')"
echo all >"$C/refresh" || fail "write all"
printf 'variants keys' >"$C/refresh" || fail "write two words"
expect_eq "refresh reads its usage" "$(cat "$C/refresh")" "write one of: images variants keys all"
{ ls -la "$C" && stat "$C/status"; } >/dev/null || fail "ls/stat of .imagesfs"
expect_eq "requests of everything in .imagesfs" "$(emu_total)" 0

log "df -i counts the account's images, not .imagesfs"
images=$(curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/stats" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["count"]["current"])')
sleep 0.1
expect_eq "df -i used" "$(df --output=iused "$M" | tail -1 | tr -d ' ')" "$images"
expect_eq "images listed" "$(find "$M/images" -type f | wc -l)" "$images"

umount_fs "$M"
echo "PASS"

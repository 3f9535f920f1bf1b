#!/usr/bin/env bash
# user.state, the read-only upload state of every image: `stored` after a successful cp,
# `failed: EINVAL: <API message>` after a refused upload (cleared by the next success),
# `local` for a file made here and never uploaded, `uploading` seen from a second process
# while a slow upload runs; listed by getfattr -d; cannot be set.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt I=$E2E_T/mnt/images
mount_fs "$M"
state() { getfattr --absolute-names --only-values -n user.state "$1"; }
make_png "$E2E_T/a.png" 10 10 1
make_png "$E2E_T/a2.png" 12 12 2
printf 'not an image\n' >"$E2E_T/bad.png"

log "stored after a successful cp"
cp "$E2E_T/a.png" "$I/a.png" || fail "cp"
expect_eq "state after cp" "$(state "$I/a.png")" stored
getfattr --absolute-names -d "$I/a.png" | grep -qx 'user.state="stored"' ||
	fail "getfattr -d does not list user.state"

log "failed: EINVAL: <API message> after a refused upload, cleared by the next success"
cp "$E2E_T/bad.png" "$I/a.png" 2>/dev/null && fail "refused bytes were uploaded"
cmp -s "$E2E_T/a.png" "$I/a.png" || fail "the image changed after a refused replace"
expect_eq "state after a refused upload" "$(state "$I/a.png")" \
	"failed: EINVAL: Unsupported image format"
cp "$E2E_T/a2.png" "$I/a.png" || fail "cp after the failure"
expect_eq "state after the next success" "$(state "$I/a.png")" stored

log "local: made here, never uploaded"
touch "$I/empty.png" || fail "touch"
expect_eq "state of a touched file" "$(state "$I/empty.png")" local

log "uploading: seen from a second process while a slow upload runs"
curl -fsS -X POST -d '{"op":"images.upload","mode":"stall","stall_ms":2500,"count":1}' \
	"$EMU_ADMIN/faults" >/dev/null || fail "stall rule"
make_png "$E2E_T/slow.png" 14 14 3
cp "$E2E_T/slow.png" "$I/slow.png" &
cp_pid=$!
seen=""
for _ in $(seq 1 200); do # until the cp ends (2.5 s and more), every 0.05 s
	s=$(state "$I/slow.png" 2>/dev/null) || s=""
	[[ $s == uploading ]] && { seen=1; break; }
	kill -0 "$cp_pid" 2>/dev/null || break
	sleep 0.05
done
[[ -n $seen ]] || fail "user.state was never 'uploading' during a 2.5 s upload (last: '$s')"
wait "$cp_pid" || fail "slow cp"
expect_eq "state after the slow upload" "$(state "$I/slow.png")" stored

log "read-only"
expect_errno EPERM "os.setxattr('$I/a.png','user.state',b'stored')"
expect_errno EPERM "os.removexattr('$I/a.png','user.state')"

umount_fs "$M"
echo "PASS"

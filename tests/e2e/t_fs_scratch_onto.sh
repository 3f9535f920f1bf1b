#!/usr/bin/env bash
# A scratch file (".NAME", rsync's temporary) renamed onto an image whose bytes cannot be
# fetched first (rename_remote): gone on the server already, the rename is a plain upload;
# a fetch the server refuses fails the rename and leaves the scratch file usable (its
# staged bytes were locked for the upload). Real mv/cat against a real mount.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
I=$M/images
auth=(-H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN")
emu_seed 2 dst-
mount_fs "$M"
ls -l "$I" >/dev/null || fail "listing images"
make_png "$E2E_T/a.png" 7 || fail "making a.png"
# within SECS CMD...: CMD's status, or a failure when it has not finished after SECS. A
# process waiting for a FUSE reply that never comes cannot be killed (timeout(1) would wait
# forever), so on expiry the daemon is killed, which ends its requests, and the test fails.
within() {
	local secs=$1 pid i
	shift
	"$@" &
	pid=$!
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || {
			wait "$pid"
			return
		}
		sleep 0.1
	done
	kill -9 "${FS_PID[$M]}" 2>/dev/null
	wait "$pid" 2>/dev/null
	fail "hung for $secs s: $*"
}

log "onto an image deleted elsewhere (its bytes never cached): a plain upload"
cp "$E2E_T/a.png" "$I/.a.tmp" || fail "writing the scratch file"
curl -fsS -X DELETE "${auth[@]}" "$EMU_URL/accounts/$ACCOUNT/images/v1/dst-000000" >/dev/null ||
	fail "deleting dst-000000 behind the mount"
mv "$I/.a.tmp" "$I/dst-000000" || fail "mv .a.tmp onto dst-000000 (gone on the server)"
curl -fsS "${auth[@]}" "$EMU_URL/accounts/$ACCOUNT/images/v1/dst-000000/blob" >"$E2E_T/got0" ||
	fail "dst-000000 was not uploaded"
cmp "$E2E_T/a.png" "$E2E_T/got0" || fail "dst-000000 does not hold the scratch file's bytes"

log "onto an image whose bytes the server refuses: EIO/EACCES, the scratch file stays usable"
cp "$E2E_T/a.png" "$I/.b.tmp" || fail "writing the second scratch file"
curl -fsS -X POST -d '{"op":"images.blob","mode":"status","status":403,"count":20}' \
	"$EMU_ADMIN/faults" >/dev/null || fail "arming the blob fault"
python3 - "$I/.b.tmp" "$I/dst-000001" <<'PY' || fail "the refused rename did not fail"
import os, sys
try:
    os.rename(sys.argv[1], sys.argv[2])
except OSError as e:
    sys.exit(0)
sys.exit(1)
PY
curl -fsS -X DELETE "$EMU_ADMIN/faults" >/dev/null || fail "clearing faults"
within 10 cat "$I/.b.tmp" >"$E2E_T/got1" || fail "reading the scratch file after the failed rename hung or failed"
cmp "$E2E_T/a.png" "$E2E_T/got1" || fail "the scratch file changed"
within 10 mv "$I/.b.tmp" "$I/dst-000001" || fail "the retried rename hung or failed"
curl -fsS "${auth[@]}" "$EMU_URL/accounts/$ACCOUNT/images/v1/dst-000001/blob" >"$E2E_T/got2" ||
	fail "dst-000001 missing"
cmp "$E2E_T/a.png" "$E2E_T/got2" || fail "dst-000001 does not hold the scratch file's bytes"
umount_fs "$M"
echo PASS

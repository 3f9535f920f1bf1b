#!/usr/bin/env bash
# An emulator that refuses batch tokens (403, like a token without the permission): the mount
# asks once, says so once in the log, and every operation works on the global API. Then an
# API without the batch_token endpoint (404), a batch_url that is no batch host (refuses every
# token) and one that does not answer at all: copies still succeed on the global API, and the
# first two say so once.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --refuse-batch-tokens
emu_seed 2 s- 100
make_pngs "$E2E_T/src" 20
M=$E2E_T/mnt
mount_fs "$M" "batch=on"

log "copy, list, read, edit, delete with the batch API refused"
emu_stats_reset
cp -r "$E2E_T/src/." "$M/images/" || fail "cp -r"
ls -l "$M/images" >/dev/null || fail "ls"
cat "$M/images/s-000001" >/dev/null || fail "read"
setfattr -n user.creator -v fb "$M/images/p3.png" || fail "setfattr"
rm "$M/images/p4.png" || fail "rm"
cmp "$E2E_T/src/p5.png" "$M/images/p5.png" || fail "read back"
expect_eq "token requests" "$(emu_op_global images.batch_token)" 1
expect_eq "uploads on the global API" "$(emu_op_global images.upload)" 20
expect_eq "edits on the global API" "$(emu_op_global images.edit)" 1
expect_eq "deletes on the global API" "$(emu_op_global images.delete)" 1
expect_eq "batch requests" "$(emu_stat batch_total)" 0
expect_eq "p4.png after rm" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" "$EMU_URL/accounts/$ACCOUNT/images/v1/p4.png")" 404
rm "$E2E_T/src/p4.png"
emu_verify_blobs "$E2E_T/src"
lines=$(grep -c "batch API unavailable" "${FS_LOG[$M]}")
expect_eq "log lines about the fallback" "$lines" 1
grep "batch API unavailable" "${FS_LOG[$M]}" | grep -q "9109" || fail "the log line does not say why: $(grep batch "${FS_LOG[$M]}")"
umount_fs "$M"
kill "$EMU_PID"
wait "$EMU_PID" 2>/dev/null

log "an API without the batch_token endpoint (404): the global API, said once"
emu_start
curl -fsS -X POST -d '{"op":"images.batch_token","status":404}' "$EMU_ADMIN/faults" >/dev/null ||
	fail "arming the batch_token fault"
M=$E2E_T/mnt-404
mount_fs "$M" "batch=on,cache_dir=$E2E_T/cache-404"
make_pngs "$E2E_T/src404" 8 n-
emu_stats_reset
cp -r "$E2E_T/src404/." "$M/images/" || fail "cp -r without a batch_token endpoint"
rm "$M/images/n-3.png" || fail "rm without a batch_token endpoint"
expect_eq "token requests (404)" "$(emu_op_global images.batch_token)" 1
expect_eq "uploads on the global API (404)" "$(emu_op_global images.upload)" 8
expect_eq "batch requests (404)" "$(emu_stat batch_total)" 0
expect_eq "log lines about the fallback (404)" "$(grep -c "batch API unavailable" "${FS_LOG[$M]}")" 1
grep "batch API unavailable" "${FS_LOG[$M]}" | grep -q "404" || fail "the log line does not say why: $(grep batch "${FS_LOG[$M]}")"
rm "$E2E_T/src404/n-3.png"
emu_verify_blobs "$E2E_T/src404"
umount_fs "$M"
curl -fsS -X DELETE "$EMU_ADMIN/faults" >/dev/null || fail "clearing faults"

log "a batch_url that refuses every batch token, and one that is not listening"
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
i=0
for url in "${EMU_URL}" "http://127.0.0.1:$free_port"; do
	i=$((i + 1))
	M=$E2E_T/mnt-url$i
	mount_fs "$M" "batch=on,batch_url=$url,cache_dir=$E2E_T/cache-url$i"
	make_pngs "$E2E_T/src$i" 12 "u$i-"
	emu_stats_reset
	cp -r "$E2E_T/src$i/." "$M/images/" || fail "cp -r with batch_url=$url"
	emu_verify_blobs "$E2E_T/src$i"
	expect_eq "uploads on the global API (batch_url=$url)" "$(emu_op_global images.upload)" 12
	tokens=$(emu_op_global images.batch_token)
	((tokens <= 8)) || fail "$tokens token requests for 12 uploads with batch_url=$url"
	umount_fs "$M"
done
expect_eq "log lines for a batch host that refuses every token" \
	"$(grep -c "refuses every batch token" "${FS_LOG[$E2E_T/mnt-url1]}")" 1
echo "PASS t_fs_batch_fallback"

#!/usr/bin/env bash
# The batch API under Cloudflare's real global limit (--rate-limit 1200/300) with the mount's
# default options: cp -r of 1,000 small images exits 0, stores every image byte-exact, gets
# no 429, makes at most 10 requests on the global API (listing, stats, tokens) and sends
# every upload to the batch host. Reads, keys, variants and stats stay on the global API.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --rate-limit 1200/300
emu_seed 3 s- 100
make_pngs "$E2E_T/src" 1000
M=$E2E_T/mnt
emu_stats_reset
E2E_BATCH=default mount_fs "$M" # the default options: batch=on is the default

log "cp -r of 1,000 images"
start=$(date +%s%N)
cp -r "$E2E_T/src/." "$M/images/" || fail "cp -r exited $?"
ms=$((($(date +%s%N) - start) / 1000000))
global=$(emu_total)
echo "cp -r of 1,000 images: $ms ms, $global global requests, $(emu_stat batch_total) batch requests"
expect_eq "429 responses (global)" "$(emu_stat sent_429)" 0
expect_eq "429 responses (batch)" "$(emu_stat sent_429_batch)" 0
((global <= 10)) || fail "$global requests on the global API: $(curl -fsS "$EMU_ADMIN/stats")"
expect_eq "uploads on the global API" "$(emu_op_global images.upload)" 0
expect_eq "uploads on the batch host" "$(emu_op_batch images.upload)" 1000
expect_eq "images stored" "$(curl -fsS "$EMU_ADMIN/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])')" 1003
emu_verify_blobs "$E2E_T/src"

log "reads, keys, variants and stats go to the global API"
emu_stats_reset
cat "$M/images/s-000001" >/dev/null || fail "read s-000001"
ls "$M/keys" "$M/variants" >/dev/null || fail "ls keys variants"
cat "$M/stats" >/dev/null || fail "cat stats"
df "$M" >/dev/null || fail "df"
expect_eq "blob reads on the global API" "$(emu_op_global images.blob)" 1
(($(emu_op_global keys.list) >= 1)) || fail "keys not listed on the global API"
(($(emu_op_global variants.list) >= 1)) || fail "variants not listed on the global API"
(($(emu_op_global stats.get) >= 1)) || fail "stats not read on the global API"
expect_eq "batch requests for reads/keys/variants/stats" "$(emu_stat batch_total)" 0

log "details, edits and deletes go to the batch host"
emu_stats_reset
setfattr -n user.creator -v batch-test "$M/images/p8.png" || fail "setfattr"
expect_eq "edits on the batch host" "$(emu_op_batch images.edit)" 1
rm "$M/images/p9.png" || fail "rm"
expect_eq "deletes on the batch host" "$(emu_op_batch images.delete)" 1
expect_eq "deletes on the global API" "$(emu_op_global images.delete)" 0
expect_eq "edits on the global API" "$(emu_op_global images.edit)" 0
grep -qi "batch" "${FS_LOG[$M]}" && fail "unexpected batch log line: $(grep -i batch "${FS_LOG[$M]}")"
grep -q "bt_" "${FS_LOG[$M]}" && fail "a batch token is in the log"
umount_fs "$M"
echo "PASS t_fs_batch"

#!/usr/bin/env bash
# The batch host's per-token limit pushed past its rate: --batch-rate 20 and 8 parallel
# writers. No cp fails; the uploads are slowed (the host sends 429s, the mount waits and
# repeats them), none is lost or stored twice, and none falls back to the global API.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --batch-rate 20
make_pngs "$E2E_T/src" 240
M=$E2E_T/mnt
mount_fs "$M" "batch=on"
stored() { curl -fsS "$EMU_ADMIN/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])'; }

log "8 parallel writers against 20 requests/s per token"
emu_stats_reset
start=$(date +%s%N)
(cd "$E2E_T/src" && ls | xargs -P 8 -n 30 sh -c 'cp "$@" "'"$M"'/images/"' sh) ||
	fail "a cp failed"
ms=$((($(date +%s%N) - start) / 1000000))
tokens=$(emu_op_global images.batch_token)
n429=$(emu_stat sent_429_batch)
echo "240 uploads by 8 writers: $ms ms, $tokens tokens, $n429 batch 429s"
((n429 >= 1)) || fail "the batch host never refused: the limit was not reached"
expect_eq "images stored (none lost, none twice)" "$(stored)" 240
expect_eq "uploads on the global API" "$(emu_op_global images.upload)" 0
expect_eq "uploads on the batch host" "$(emu_op_batch images.upload)" $((240 + n429))
emu_verify_blobs "$E2E_T/src"
grep -qi "cannot upload" "${FS_LOG[$M]}" && fail "an upload failed: $(grep -i 'cannot upload' "${FS_LOG[$M]}" | head -3)"
umount_fs "$M"
echo "PASS t_fs_batch_rate"

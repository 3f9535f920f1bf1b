#!/usr/bin/env bash
# Batch tokens that expire during a copy: with a 2-second --batch-token-ttl the mount renews
# its tokens before they expire and no cp fails; tokens the server expires early (the admin
# hook, as a revoked token would be) are refused, renewed and the refused upload is sent
# again: every image stored once, byte-exact, nothing sent to the global API's uploads.
# A -d mount's libcurl trace of batch requests shows Authorization redacted and no token.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --batch-token-ttl 2 --latency-ms 10
make_pngs "$E2E_T/a" 300 a
make_pngs "$E2E_T/b" 300 b
M=$E2E_T/mnt
mount_fs "$M" "batch=on,batch_tokens=1" # one token: every token after the first is a renewal
stored() { curl -fsS "$EMU_ADMIN/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])'; }

log "tokens renewed before they expire"
emu_stats_reset
start=$(date +%s%N)
cp -r "$E2E_T/a/." "$M/images/" || fail "cp -r exited $?"
ms=$((($(date +%s%N) - start) / 1000000))
tokens=$(emu_op_global images.batch_token)
echo "cp -r of 300 images: $ms ms, $tokens batch tokens, $(emu_stat batch_refused) refused"
((tokens >= 1 + ms / 2000)) || fail "$tokens batch token(s) for a ${ms} ms copy: not renewed"
expect_eq "requests refused for an expired token (renewed in time)" "$(emu_stat batch_refused)" 0
expect_eq "uploads on the batch host" "$(emu_op_batch images.upload)" 300
expect_eq "uploads on the global API" "$(emu_op_global images.upload)" 0
expect_eq "images stored" "$(stored)" 300
emu_verify_blobs "$E2E_T/a"

log "tokens expired by the server mid-copy are renewed, the refused uploads sent again"
emu_stats_reset
cp -r "$E2E_T/b/." "$M/images/" &
cp_pid=$!
for _ in 1 2 3; do
	sleep 0.4
	curl -fsS -X POST "$EMU_ADMIN/batch_tokens/expire" >/dev/null || fail "expire hook"
done
wait "$cp_pid" || fail "cp -r exited $? after tokens were expired"
refused=$(emu_stat batch_refused)
echo "refused batch requests: $refused, tokens: $(emu_op_global images.batch_token)"
((refused >= 1)) || fail "no batch request was refused: the test did not expire a token in use"
expect_eq "uploads on the batch host" "$(emu_op_batch images.upload)" $((300 + refused))
expect_eq "uploads on the global API" "$(emu_op_global images.upload)" 0
expect_eq "images stored" "$(stored)" 600
emu_verify_blobs "$E2E_T/b"
grep -q "bt_" "${FS_LOG[$M]}" && fail "a batch token is in the log"
umount_fs "$M"

log "-d (libcurl's trace): batch requests show Authorization redacted, no token anywhere"
M=$E2E_T/mnt-d
mount_fs "$M" "batch=on,-d,cache_dir=$E2E_T/cache-d"
make_pngs "$E2E_T/d" 3 d
emu_stats_reset
cp -r "$E2E_T/d/." "$M/images/" || fail "cp -r with -d"
cat "$M/images/d1.png" >/dev/null || fail "read with -d"
expect_eq "uploads on the batch host (-d)" "$(emu_op_batch images.upload)" 3
umount_fs "$M"
grep -q "POST /images/v1 " "${FS_LOG[$M]}" || fail "the -d log shows no batch upload: the check is blind"
grep -qi "authorization: \[redacted\]" "${FS_LOG[$M]}" || fail "no redacted Authorization line in the -d log"
grep -q "bt_" "${FS_LOG[$M]}" && fail "a batch token is in the -d log: $(grep -m1 -o '.\{20\}bt_.\{8\}' "${FS_LOG[$M]}")"
grep -q "$IMAGESFS_EMULATOR_TOKEN" "${FS_LOG[$M]}" && fail "the API token is in the -d log"
echo "PASS t_fs_batch_tokens"

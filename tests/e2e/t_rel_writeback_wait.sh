#!/usr/bin/env bash
# -o writeback: an operation that must wait for a pending upload of its path (here unlink;
# open(O_TRUNC), rename, setxattr and fsync share the wait, fs_writeback.c) fails with
# ETIMEDOUT as soon as an attempt at that upload fails, instead of holding the caller
# (unkillable: a FUSE request in flight) for up to 10 minutes while the server refuses.
# The upload stays queued and is stored once the server accepts it; the file is unchanged.
# Found by the model test (writeback, seed 2: `rm` hung at op 281 while DELETEs were
# refused and the file's replace was pending).
# shellcheck disable=SC2119 # helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
I=$M/images
SYNC=$IMAGESFS_BIN/imagesfs
mount_fs "$M" writeback
make_png "$E2E_T/a.png" 20 20 1
make_png "$E2E_T/b.png" 21 21 2
cp "$E2E_T/a.png" "$I/x.png" || fail "cp a.png"
"$SYNC" sync "$M" || fail "imagesfs sync"

log "replace x.png while DELETEs are refused (four attempts' worth), then rm it"
# Each attempt of the pending replace spends the client's 5 tries on its DELETE: the first
# four attempts fail (the journal's backoff between them leaves seconds for rm to start
# waiting), the fifth would succeed. Waiting for the upload, rm would then delete the new
# image and exit 0; it must fail at the first failed attempt instead.
fault_add '{"op":"images.delete","mode":"status","status":503,"retry_after":0,"count":20}'
cp "$E2E_T/b.png" "$I/x.png" || fail "cp b.png onto x.png (write-back)"
err=$(python3 -c 'import errno, os, sys
try:
    os.unlink(sys.argv[1])
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
else:
    print("exit 0")' "$I/x.png")
expect_eq "unlink of a file whose pending upload cannot be stored yet" "$err" ETIMEDOUT
cmp "$E2E_T/b.png" "$I/x.png" || fail "x.png does not read its pending bytes after the failed rm"

log "once the server accepts DELETEs the upload is stored; rm then works"
faults_clear
"$SYNC" sync "$M" || fail "imagesfs sync after the faults"
api_blob x.png "$E2E_T/got" || fail "x.png is not in the account"
cmp "$E2E_T/b.png" "$E2E_T/got" || fail "the account does not hold the replaced bytes"
rm "$I/x.png" || fail "rm x.png"
api_has_id x.png && fail "x.png still in the account after rm"
daemon_alive "$M"
rel_umount "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

#!/usr/bin/env bash
# Issue 12, finding 1: a replace (cp onto an existing image) or a mv onto an existing image
# whose DELETE step loses every reply (the server deleted the image, the client never heard)
# learns that the delete happened and carries on: the account ends with the new bytes under
# the name, with the old metadata and creator for a replace; nothing is lost. When the
# upload after such a delete also fails, the old image is put back and cp fails.
# shellcheck disable=SC2119 # helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"

# attrs_of ID: "metadata|creator" of the stored image.
attrs_of() {
	api_image_json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
m = {k: v for k, v in (d.get("meta") or {}).items() if k != "imagesfs"}  # minus the stamp key
print(json.dumps(m or None, sort_keys=True, separators=(",", ":")) + "|" + str(d.get("creator")))'
}
stored_is() { # ID FILE: the account holds ID with exactly FILE's bytes
	api_blob "$1" "$E2E_T/got" || fail "$1 is not stored (lost)"
	cmp -s "$2" "$E2E_T/got" || fail "$1: stored bytes are not those of $2"
}
LOST_DELETE='{"op":"images.delete","mode":"close","after":true}'

for i in 1 2 3 4 5; do make_png "$E2E_T/v$i.png" 14 14 "$i"; done
cp "$E2E_T/v1.png" "$M/images/x.png" || fail "cp x.png"
setfattr -n user.metadata -v '{"keep":"me"}' "$M/images/x.png"
setfattr -n user.creator -v alice "$M/images/x.png"

log "replace, every DELETE reply lost: cp succeeds with the new bytes and the old attributes"
emu_stats_reset
fault_add "$LOST_DELETE"
cp "$E2E_T/v2.png" "$M/images/x.png" || fail "cp onto x.png failed although it could finish"
faults_clear
((($(emu_op images.delete)) >= 2)) || fail "the fault did not fire"
stored_is x.png "$E2E_T/v2.png"
expect_eq "x.png attributes" "$(attrs_of x.png)" '{"keep":"me"}|alice'
cmp "$E2E_T/v2.png" "$M/images/x.png" || fail "x.png reads wrong in the mount"

log "replace, every DELETE reply lost and the upload refused: cp fails, the old image is back"
fault_add "$LOST_DELETE"
fault_add '{"op":"images.upload","status":400,"count":1}'
cp "$E2E_T/v3.png" "$M/images/x.png" 2>"$E2E_T/cp.err" && fail "cp succeeded although the upload was refused"
faults_clear
log "cp said: $(cat "$E2E_T/cp.err")"
stored_is x.png "$E2E_T/v2.png"
expect_eq "x.png attributes after the restore" "$(attrs_of x.png)" '{"keep":"me"}|alice'

log "mv onto an existing image, every DELETE reply lost: mv succeeds, one image, source gone"
cp "$E2E_T/v4.png" "$M/images/src.png" || fail "cp src.png"
mkdir "$M/images/dir"
cp "$E2E_T/v5.png" "$M/images/dir/dst.png" || fail "cp dst.png"
emu_stats_reset
fault_add "$LOST_DELETE"
mv "$M/images/src.png" "$M/images/dir/dst.png" || fail "mv failed although it could finish"
faults_clear
# two deletes (the destination, then the source), each with every reply lost
((($(emu_op images.delete)) >= 4)) || fail "the fault did not fire for both deletes"
stored_is dir/dst.png "$E2E_T/v4.png"
api_has_id src.png && fail "the source id remains after mv exited 0"
[[ -e $M/images/src.png ]] && fail "src.png still shows in the mount"
cmp "$E2E_T/v4.png" "$M/images/dir/dst.png" || fail "dir/dst.png reads wrong"

daemon_alive "$M"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

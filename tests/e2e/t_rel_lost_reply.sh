#!/usr/bin/env bash
# Issue 12, finding 3: a DELETE or PATCH whose every reply is lost (the server acted, the
# client never heard) is settled by reading the image back, so rm's and setfattr's exit
# status match what the server holds. The same faults before the server acts must fail.
# An upload whose outcome cannot be read back fails a plain cp; during a mv or a replace the
# journal reads the destination back, and finding the upload stored, they succeed (found by
# the model test, writeback seed 7: a failed mv whose rename the journal had completed).
# t_rel_lost_reply_batch.sh runs it on the batch host (E2E_BATCH=on).
# shellcheck disable=SC2015,SC2119 # `a && b || fail` is intended; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"

# meta_of ID: the stored user metadata (without the reserved "imagesfs" stamp key) as compact
# JSON ("null" when none).
meta_of() {
	api_image_json "$1" | python3 -c '
import json, sys
m = {k: v for k, v in (json.load(sys.stdin).get("meta") or {}).items() if k != "imagesfs"}
print(json.dumps(m or None, sort_keys=True, separators=(",", ":")))'
}

# on_host OP: with E2E_BATCH=on (t_rel_lost_reply_batch.sh) every OP and its read-back
# (images.get) went to the batch host; otherwise to the global API.
on_host() {
	local other=global
	[[ ${E2E_BATCH:-off} == on ]] || other="batch"
	expect_eq "$1 on the $other host" "$(emu_op_$other "$1")" 0
	expect_eq "read-backs (images.get) on the $other host" "$(emu_op_$other images.get)" 0
	(($(emu_op images.get) >= 1)) || fail "$1: no read-back"
}

for i in 1 2 3 4; do
	make_png "$E2E_T/p$i.png" 12 12 "$i"
	cp "$E2E_T/p$i.png" "$M/images/p$i.png" || fail "cp p$i.png"
done

n=0
for rule in '{"op":"images.delete","mode":"close","after":true}' \
	'{"op":"images.delete","mode":"status","status":502,"after":true}'; do
	n=$((n + 1))
	log "rm, every reply lost: $rule"
	emu_stats_reset
	fault_add "$rule"
	rm "$M/images/p$n.png" || fail "rm failed although the server deleted p$n.png ($rule)"
	faults_clear
	((($(emu_op images.delete)) >= 2)) || fail "the fault did not fire"
	on_host images.delete
	api_has_id "p$n.png" && fail "p$n.png is still stored"
	[[ -e $M/images/p$n.png ]] && fail "p$n.png still shows in the mount"
done

log "rm, every request dropped before the server acts: rm fails, the image stays"
fault_add '{"op":"images.delete","mode":"close"}'
rm "$M/images/p3.png" 2>"$E2E_T/rm.err" && fail "rm succeeded although nothing was deleted"
faults_clear
log "rm said: $(cat "$E2E_T/rm.err")"
api_has_id p3.png || fail "p3.png was deleted although rm failed"
cmp "$E2E_T/p3.png" "$M/images/p3.png" || fail "p3.png reads wrong after the failed rm"

n=0
for rule in '{"op":"images.edit","mode":"close","after":true}' \
	'{"op":"images.edit","mode":"status","status":500,"after":true}'; do
	n=$((n + 1))
	log "setfattr, every reply lost: $rule"
	emu_stats_reset
	fault_add "$rule"
	setfattr -n user.metadata -v "{\"lost\":$n}" "$M/images/p4.png" ||
		fail "setfattr failed although the server applied it ($rule)"
	setfattr -n user.creator -v "creator-$n" "$M/images/p4.png" ||
		fail "setfattr user.creator failed although the server applied it ($rule)"
	faults_clear
	((($(emu_op images.edit)) >= 4)) || fail "the fault did not fire"
	on_host images.edit
	expect_eq "stored metadata" "$(meta_of p4.png)" "{\"lost\":$n}"
	expect_eq "metadata in the mount" "$(getfattr --absolute-names --only-values -n user.metadata "$M/images/p4.png")" \
		"{\"lost\":$n}"
	expect_eq "creator in the mount" "$(getfattr --absolute-names --only-values -n user.creator "$M/images/p4.png")" \
		"creator-$n"
done

log "setfattr, every request dropped before the server acts: fails with EIO, nothing changes"
fault_add '{"op":"images.edit","mode":"close"}'
expect_errno EIO "os.setxattr('$M/images/p4.png', 'user.metadata', b'{\"never\":1}')"
faults_clear
expect_eq "stored metadata after the failed set" "$(meta_of p4.png)" '{"lost":2}'

log "upload reply lost while the image cannot be read back: cp fails with EIO, not 'File exists'"
make_png "$E2E_T/u.png" 12 12 9
fault_add '{"op":"images.upload","mode":"close","after":true,"count":1}'
fault_add '{"op":"images.blob","status":503,"retry_after":0}'
cp "$E2E_T/u.png" "$M/images/u.png" 2>"$E2E_T/cp.err" && fail "cp succeeded without reading the outcome"
faults_clear
log "cp said: $(cat "$E2E_T/cp.err")"
grep -q 'Input/output error' "$E2E_T/cp.err" || fail "cp did not fail with EIO: $(cat "$E2E_T/cp.err")"
grep -q 'upload outcome unknown' "${FS_LOG[$M]}" || fail "no log line says the outcome is unknown"

# A rename and a replace journal their intent, and the journal settles a failed one by
# reading the destination back (a GET, which works here): it finds the upload stored, so
# the operation is done. Exit 0, a rename's source gone, the mount as the account.
lost_upload_faults() {
	fault_add '{"op":"images.upload","mode":"close","after":true,"count":1}'
	fault_add '{"op":"images.blob","status":503,"retry_after":0}'
}
log "the same during a mv: the journal finds it stored, mv exits 0"
lost_upload_faults
mv "$M/images/p3.png" "$M/images/q3.png" || fail "mv exited non-zero although q3.png is stored"
faults_clear
api_has_id p3.png && fail "p3.png is still in the account"
api_blob q3.png "$E2E_T/got" && cmp -s "$E2E_T/p3.png" "$E2E_T/got" || fail "q3.png not stored"
[[ -e $M/images/p3.png ]] && fail "the mount shows p3.png, which the account no longer has"
cmp "$E2E_T/p3.png" "$M/images/q3.png" || fail "q3.png reads wrong"
log "the same during a replace: cp exits 0, the new bytes with the old metadata"
make_png "$E2E_T/v.png" 13 13 10
lost_upload_faults
cp "$E2E_T/v.png" "$M/images/p4.png" || fail "cp onto p4.png exited non-zero although its bytes are stored"
faults_clear
api_blob p4.png "$E2E_T/got" && cmp -s "$E2E_T/v.png" "$E2E_T/got" || fail "p4.png does not hold the new bytes"
expect_eq "metadata kept by the replace" "$(meta_of p4.png)" '{"lost":2}'
cmp "$E2E_T/v.png" "$M/images/p4.png" || fail "p4.png reads wrong"

daemon_alive "$M"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

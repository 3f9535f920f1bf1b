#!/usr/bin/env bash
# Issue 12, finding 3: a DELETE or PATCH whose every reply is lost (the server acted, the
# client never heard) is settled by reading the image back, so rm's and setfattr's exit
# status match what the server holds. The same faults before the server acts must fail.
# t_rel_lost_reply_batch.sh runs it on the batch host (E2E_BATCH=on).
# shellcheck disable=SC2119 # helpers take optional arguments
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

daemon_alive "$M"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

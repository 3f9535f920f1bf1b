#!/usr/bin/env bash
# Issue 12, finding 4: a setxattr/removexattr the server refuses for the whole retry budget
# (503, 429) fails with EIO, never with EOPNOTSUPP (which the kernel makes of EAGAIN, and
# which cp -a and mv read as "no xattrs here"); nothing changes on the server, and the mount
# keeps accepting attributes once the server answers again. A copy or move of an image
# with metadata onto the mount while uploads are refused fails loudly and drops nothing.
# shellcheck disable=SC2119 # helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"

meta_of() {
	api_image_json "$1" | python3 -c '
import json, sys
m = {k: v for k, v in (json.load(sys.stdin).get("meta") or {}).items() if k != "imagesfs"}
print(json.dumps(m or None, sort_keys=True, separators=(",", ":")))'
}

make_png "$E2E_T/a.png" 12 12 1
cp "$E2E_T/a.png" "$M/images/a.png" || fail "cp a.png"
setfattr -n user.metadata -v '{"v":0}' "$M/images/a.png" || fail "setfattr without faults"

want='{"v":0}'
for st in 503 429; do
	log "setxattr and removexattr under $st for the whole retry budget: EIO"
	emu_stats_reset
	fault_add "{\"op\":\"images.edit\",\"status\":$st,\"retry_after\":0}"
	expect_errno EIO "os.setxattr('$M/images/a.png', 'user.metadata', b'{\"v\":$st}')"
	expect_errno EIO "os.setxattr('$M/images/a.png', 'user.creator', b'c$st')"
	expect_errno EIO "os.removexattr('$M/images/a.png', 'user.metadata')"
	setfattr -n user.metadata -v '{"v":1}' "$M/images/a.png" 2>"$E2E_T/sf.err" &&
		fail "setfattr succeeded under $st"
	grep -q 'Input/output error' "$E2E_T/sf.err" || fail "setfattr said: $(cat "$E2E_T/sf.err")"
	faults_clear
	((($(emu_op images.edit)) >= 8)) || fail "the fault did not fire for the whole budget"
	expect_eq "stored metadata after refused sets" "$(meta_of a.png)" "$want"
	# Nothing sticky: the kernel did not decide this mount has no xattrs.
	setfattr -n user.metadata -v "{\"v\":\"ok$st\"}" "$M/images/a.png" ||
		fail "setfattr after the server recovered"
	want="{\"v\":\"ok$st\"}"
	expect_eq "stored metadata after recovery" "$(meta_of a.png)" "$want"
done

log "cp -a and mv of an image with metadata onto the mount while uploads get 503: both fail"
make_png "$E2E_T/b.png" 12 12 2
setfattr -n user.metadata -v '{"from":"local"}' "$E2E_T/b.png" ||
	fail "the temp directory does not take user xattrs"
cp "$E2E_T/b.png" "$E2E_T/c.png"
setfattr -n user.metadata -v '{"from":"mv"}' "$E2E_T/c.png"
fault_add '{"op":"images.upload","status":503,"retry_after":0}'
cp -a "$E2E_T/b.png" "$M/images/b.png" 2>"$E2E_T/cp.err" && fail "cp -a succeeded under 503"
mv "$E2E_T/c.png" "$M/images/c.png" 2>"$E2E_T/mv.err" && fail "mv succeeded under 503"
faults_clear
log "cp -a said: $(head -n 1 "$E2E_T/cp.err"); mv said: $(head -n 1 "$E2E_T/mv.err")"
[[ -e $E2E_T/c.png ]] || fail "mv removed its source after a failed copy"
expect_eq "source metadata kept" "$(getfattr --absolute-names --only-values -n user.metadata "$E2E_T/c.png")" \
	'{"from":"mv"}'
api_has_id b.png && fail "b.png stored although cp -a failed"
api_has_id c.png && fail "c.png stored although mv failed"

log "cp -a of an image with metadata onto an existing image while PATCH gets 503: cp fails, nothing changes"
cp "$E2E_T/a.png" "$M/images/old.png" || fail "cp old.png"
setfattr -n user.metadata -v '{"old":1}' "$M/images/old.png"
fault_add '{"op":"images.edit","status":503,"retry_after":0}'
cp -a "$E2E_T/b.png" "$M/images/old.png" 2>"$E2E_T/cpa.err" &&
	fail "cp -a exited 0 although the metadata could not be stored (dropped silently)"
faults_clear
log "cp -a said: $(head -n 1 "$E2E_T/cpa.err")"
api_blob old.png "$E2E_T/got" || fail "old.png lost"
cmp -s "$E2E_T/a.png" "$E2E_T/got" || fail "old.png bytes changed by the failed cp -a"
expect_eq "old.png metadata after the failed cp -a" "$(meta_of old.png)" '{"old":1}'
cp -a "$E2E_T/b.png" "$M/images/old.png" || fail "cp -a onto old.png after recovery"
api_blob old.png "$E2E_T/got" || fail "old.png lost by cp -a"
cmp -s "$E2E_T/b.png" "$E2E_T/got" || fail "old.png not replaced"
expect_eq "old.png metadata after cp -a" "$(meta_of old.png)" '{"from":"local"}'

log "the same copies after recovery carry their metadata"
cp -a "$E2E_T/b.png" "$M/images/b.png" || fail "cp -a after recovery"
mv "$E2E_T/c.png" "$M/images/c.png" || fail "mv after recovery"
expect_eq "b.png metadata" "$(meta_of b.png)" '{"from":"local"}'
expect_eq "c.png metadata" "$(meta_of c.png)" '{"from":"mv"}'

daemon_alive "$M"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

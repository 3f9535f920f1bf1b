#!/usr/bin/env bash
# A failed replace ends with the old image back (issue 12, the 503 scenario). With the
# server answering 503 to every upload, `cp new.png MOUNT/images/x.png` onto an existing
# image fails: its DELETE ran, the new upload and the immediate restore both failed. The old
# bytes stay pinned in the journal (cache v1/pin, <cache>/journal) and, within 30 s of the
# server accepting uploads again, the account has the old x.png back, with its bytes,
# metadata and creator, on the same mount, without any user action; the journal and the
# pins are empty afterwards, and one log line says it was recovered.
# shellcheck disable=SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
C=$E2E_T/cache
rel_mount "$M" "$EMU_URL"

pins() { { find "$C/v1/pin" -type f 2>/dev/null || true; } | wc -l; }
entries() { { find "$C/journal" -name '*.intent' 2>/dev/null || true; } | wc -l; }

make_png "$E2E_T/old.png" 30 30 1
make_png "$E2E_T/new.png" 31 31 2
api_curl v1 -F "file=@$E2E_T/old.png;filename=x.png" -F "id=x.png" -F 'metadata={"keep":1}' \
	-F "creator=ann" -o /dev/null || fail "seeding x.png"
make_png "$E2E_T/y.png" 32 32 3
api_curl v1 -F "file=@$E2E_T/y.png;filename=y.png" -F "id=y.png" -o /dev/null || fail "seeding y.png"
cmp "$E2E_T/old.png" "$M/images/x.png" || fail "x.png through the mount"

log "uploads answer 503: cp onto x.png fails"
fault_add '{"op":"images.upload","mode":"status","status":503}'
rc=0
timeout 120 cp "$E2E_T/new.png" "$M/images/x.png" 2>"$E2E_T/cp.err" || rc=$?
log "cp exit $rc: $(cat "$E2E_T/cp.err")"
((rc != 0 && rc != 124)) || fail "cp did not fail (exit $rc)"
api_has_id x.png && fail "x.png still in the account: the fault did not hold the replace"
n_entries=$(entries) n_pins=$(pins) # checked after the restore (what matters first)

log "uploads accepted again: the old x.png comes back within 30 s"
faults_clear
start=$(ms_now)
until api_blob x.png "$E2E_T/got" 2>/dev/null; do
	(($(ms_now) - start < 30000)) || fail "x.png not restored 30 s after uploads were accepted"
	sleep 0.2
done
log "restored after $(($(ms_now) - start)) ms"
cmp -s "$E2E_T/old.png" "$E2E_T/got" || fail "restored bytes differ from the old image"
api_image_json x.png | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
m = dict(d.get("meta") or {})
stamp = m.pop("imagesfs", "").split()  # the old image keeps its own size (fs_times.c)
assert m == {"keep": 1} and "s=%d" % os.path.getsize(sys.argv[1]) in stamp, d
assert d.get("creator") == "ann", d
assert d.get("filename") == "x.png", d' "$E2E_T/old.png" || fail "restored metadata, creator or filename differ"
expect_eq "images named x.png" "$(api_ids | grep -cxF x.png)" 1
expect_eq "journal entries while the server refused uploads" "$n_entries" 1
expect_eq "pinned blobs while the server refused uploads" "$n_pins" 1
grep -q "cannot restore 'images/x.png' after a failed replace yet" "${FS_LOG[$M]}" ||
	fail "no log line about the pending restore"
for ((i = 0; i < 50; i++)); do
	(($(entries) == 0 && $(pins) == 0)) && break
	sleep 0.1
done
expect_eq "journal entries after recovery" "$(entries)" 0
expect_eq "pinned blobs after recovery" "$(pins)" 0
grep -q "abandoned" "${FS_LOG[$M]}" && fail "an entry was abandoned for a transient failure (503)"
expect_eq "recovery log lines" \
	"$(grep -c "recovered 'images/x.png': the previous image is back" "${FS_LOG[$M]}")" 1
cmp "$E2E_T/old.png" "$M/images/x.png" || fail "the mount does not show the restored x.png"
expect_eq "metadata through the mount" \
	"$(getfattr --absolute-names --only-values -n user.metadata "$M/images/x.png")" '{"keep":1}'

log "mv onto x.png with uploads refused: once restored, the mount shows x.png again"
cmp -s "$E2E_T/y.png" "$M/images/y.png" || fail "y.png through the mount"
ls "$M/images" >/dev/null # a fresh listing: nothing is looked up remotely for dir_ttl
fault_add '{"op":"images.upload","mode":"status","status":503,"count":12}'
mv "$M/images/y.png" "$M/images/x.png" 2>/dev/null && fail "mv succeeded although every upload failed"
start=$(ms_now)
until api_blob x.png "$E2E_T/got" 2>/dev/null; do
	(($(ms_now) - start < 30000)) || fail "x.png not restored after the failed mv"
	sleep 0.2
done
faults_clear
for ((i = 0; i < 50; i++)); do
	cmp -s "$E2E_T/old.png" "$M/images/x.png" 2>/dev/null && break
	sleep 0.1
done
cmp "$E2E_T/old.png" "$M/images/x.png" || fail "the mount does not show x.png again after its restore"
cmp "$E2E_T/y.png" "$M/images/y.png" || fail "the source y.png changed"

log "the mount still replaces normally"
cp "$E2E_T/new.png" "$M/images/x.png" || fail "replace after recovery"
api_blob x.png "$E2E_T/got" && cmp -s "$E2E_T/new.png" "$E2E_T/got" || fail "new bytes not stored"
expect_eq "journal entries after a successful replace" "$(entries)" 0
expect_eq "pinned blobs after a successful replace" "$(pins)" 0
umount_fs "$M"

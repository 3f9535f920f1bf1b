#!/usr/bin/env bash
# A rename whose source DELETE fails (issue 12, finding 2). mv uploads under the new id,
# then the DELETE of the old id is refused (503 for the client's whole retry budget). mv
# exits 0, the delete is journaled and retried in the background, the mount never shows the
# old name again meanwhile (listing refreshes and lookups included), and once the server
# accepts deletes the old id is gone from the account without any user action.
# Then a rename onto an existing image whose upload is refused ends with the destination's
# old image back and the source untouched. Last, a rename that exited 0 settles only to
# "after" (the source goes) even when the destination is removed before the deferred
# source DELETE ran, live and across a kill -9 (found by the model test, writeback seed 4).
# shellcheck disable=SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
C=$E2E_T/cache
rel_mount "$M" "$EMU_URL" "dir_ttl=1"
entries() { { find "$C/journal" -name '*.intent' 2>/dev/null || true; } | wc -l; }
pins() { { find "$C/v1/pin" -type f 2>/dev/null || true; } | wc -l; }

make_png "$E2E_T/a.png" 20 20 1
api_curl v1 -F "file=@$E2E_T/a.png;filename=a.png" -F "id=a.png" -F 'metadata={"m":1}' \
	-o /dev/null || fail "seeding a.png"
ls "$M/images" >/dev/null

log "source DELETE refused: mv exits 0 and the old name stays hidden"
fault_add '{"op":"images.delete","mode":"status","status":503}'
mv "$M/images/a.png" "$M/images/b.png" || fail "mv exited non-zero although b.png was stored"
api_blob b.png "$E2E_T/got" && cmp -s "$E2E_T/a.png" "$E2E_T/got" || fail "b.png not stored"
api_has_id a.png || fail "a.png already gone: the fault did not hold the delete"
n_entries=$(entries)
sleep 1.2 # past dir_ttl: the next ls lists the account again (a.png is still there)
ls "$M/images" | grep -qxF a.png && fail "the mount shows the old name a.png again"
[[ -e $M/images/a.png ]] && fail "a lookup of the old name a.png finds it"
ls "$M/images" | grep -qxF b.png || fail "b.png not listed"
expect_eq "journal entries while deletes fail" "$n_entries" 1

log "deletes accepted again: the old id goes without user action"
faults_clear
start=$(ms_now)
while api_has_id a.png; do
	(($(ms_now) - start < 30000)) || fail "a.png still in the account 30 s after deletes were accepted"
	sleep 0.2
done
log "old id deleted after $(($(ms_now) - start)) ms"
for ((i = 0; i < 50 && $(entries) > 0; i++)); do sleep 0.1; done
expect_eq "journal entries after recovery" "$(entries)" 0
grep -q "recovered the rename of 'images/a.png' to 'images/b.png': the old id is deleted" \
	"${FS_LOG[$M]}" || fail "no recovery log line"
expect_eq "images" "$(api_ids | sort | tr '\n' ' ')" "b.png "

log "rename onto an image, upload refused: the destination's old image comes back"
make_png "$E2E_T/c.png" 21 21 3
api_curl v1 -F "file=@$E2E_T/c.png;filename=c.png" -F "id=c.png" -F 'metadata={"c":3}' \
	-F creator=cy -o /dev/null || fail "seeding c.png"
for ((i = 0; i < 50; i++)); do # seen once the listing is older than dir_ttl=1
	cmp -s "$E2E_T/c.png" "$M/images/c.png" 2>/dev/null && break
	sleep 0.1
done
cmp -s "$E2E_T/c.png" "$M/images/c.png" || fail "c.png through the mount"
fault_add '{"op":"images.upload","mode":"status","status":503,"count":12}'
mv "$M/images/b.png" "$M/images/c.png" 2>"$E2E_T/mv.err" && fail "mv succeeded although every upload failed"
start=$(ms_now)
until api_blob c.png "$E2E_T/got" 2>/dev/null; do
	(($(ms_now) - start < 30000)) || fail "c.png not restored"
	sleep 0.2
done
faults_clear
cmp -s "$E2E_T/c.png" "$E2E_T/got" || fail "c.png does not hold its old bytes"
api_image_json c.png | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
m = dict(d.get("meta") or {})
stamp = m.pop("imagesfs", "").split()  # the old image keeps its own size (fs_times.c)
assert m == {"c": 3} and d.get("creator") == "cy", d
assert "s=%d" % os.path.getsize(sys.argv[1]) in stamp, d' "$E2E_T/c.png" || fail "c.png attributes"
api_blob b.png "$E2E_T/got" && cmp -s "$E2E_T/a.png" "$E2E_T/got" || fail "source b.png changed"
for ((i = 0; i < 100 && ($(entries) > 0 || $(pins) > 0); i++)); do sleep 0.1; done
expect_eq "journal entries at the end" "$(entries)" 0
expect_eq "pins at the end" "$(pins)" 0

# settled_gone ID: waits (bounded) until the journal is empty, then ID must be gone.
settled_gone() {
	for ((i = 0; i < 300 && $(entries) > 0; i++)); do sleep 0.1; done
	expect_eq "journal entries" "$(entries)" 0
	api_has_id "$1" && fail "$1 is back in the account: the rename that exited 0 was undone"
	return 0
}
log "mv exits 0 with its source DELETE deferred, the destination is removed at once: the source still goes"
# The mv's DELETE of d.png spends the client's 5 tries; the rm's DELETE right after gets
# through, before the journal's first retry (0.5 s later) deletes d.png.
api_curl v1 -F "file=@$E2E_T/a.png;filename=d.png" -F "id=d.png" -o /dev/null || fail "seeding d.png"
api_curl v1 -F "file=@$E2E_T/a.png;filename=f.png" -F "id=f.png" -o /dev/null || fail "seeding f.png"
ls "$M/images" >/dev/null
fault_add '{"op":"images.delete","mode":"status","status":503,"retry_after":0,"count":5}'
mv "$M/images/d.png" "$M/images/e.png" || fail "mv d.png e.png"
rm "$M/images/e.png" || fail "rm e.png"
settled_gone d.png
log "the same, and the daemon is killed before the source is deleted: the next mount deletes it"
fault_add '{"op":"images.delete","mode":"status","status":503,"retry_after":0,"count":5}'
mv "$M/images/f.png" "$M/images/g.png" || fail "mv f.png g.png"
rm "$M/images/g.png" || fail "rm g.png"
fault_add '{"op":"images.delete","mode":"status","status":503}' # the journal cannot delete f.png
kill9_fs "$M"
rel_mount "$M" "$EMU_URL" "dir_ttl=1"
ls "$M/images" | grep -qxF f.png && fail "after the remount the mount shows f.png, renamed away"
faults_clear
settled_gone f.png
expect_eq "images at the end" "$(api_ids | sort | tr '\n' ' ')" "b.png c.png "
umount_fs "$M"

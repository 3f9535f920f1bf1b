#!/usr/bin/env bash
# A rename whose source DELETE fails (issue 12, finding 2). mv uploads under the new id,
# then the DELETE of the old id is refused (503 for the client's whole retry budget). mv
# exits 0, the delete is journaled and retried in the background, the mount never shows the
# old name again meanwhile (listing refreshes and lookups included), and once the server
# accepts deletes the old id is gone from the account without any user action.
# Then a rename onto an existing image whose upload is refused ends with the destination's
# old image back and the source untouched.
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
umount_fs "$M"

#!/usr/bin/env bash
# kill -9 of the daemon at each step of a replace and of a rename, then a remount (issue 12).
# Each step is held with an emulator fault: "status 503" repeats keep the client retrying a
# request the server never runs (the step has not happened), "stall" runs the request and
# holds its reply (the step happened, the client does not know). The daemon is killed while
# held; after the remount the journal settles in the background and the account must reach
# the allowed state written in docs/RELIABILITY.md for that point: nothing lost, nothing
# duplicated, the journal and the cache's pins empty, one recovery log line.
# shellcheck disable=SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
C=$E2E_T/cache
entries() { { find "$C/journal" -name '*.intent' 2>/dev/null || true; } | wc -l; }
pins() { { find "$C/v1/pin" -type f 2>/dev/null || true; } | wc -l; }
make_png "$E2E_T/old.png" 30 30 1
make_png "$E2E_T/new.png" 31 31 2

# seed ID FILE: uploads FILE as ID with metadata {"id":ID} and creator "ann".
seed() {
	api_curl v1 -F "file=@$2;filename=${1##*/}" -F "id=$1" -F "metadata={\"id\":\"$1\"}" \
		-F creator=ann -o /dev/null || fail "seeding $1"
}
# fault_hits: how many times the first fault rule fired.
fault_hits() {
	curl -fsS "$EMU_ADMIN/faults" | python3 -c '
import json, sys
r = json.load(sys.stdin)["rules"]
print(r[0]["hits"] if r else 0)'
}
# expect_image ID FILE: ID exists exactly once with FILE's bytes and its seeded attributes.
expect_image() {
	expect_eq "images named $1" "$(api_ids | grep -cxF "$1")" 1
	api_blob "$1" "$E2E_T/got" || fail "$1 missing"
	cmp -s "$2" "$E2E_T/got" || fail "$1 does not hold $(basename "$2")"
}
expect_gone() { api_has_id "$1" && fail "$1 still in the account"; return 0; }

# crash_case NAME FAULT CMD...: runs CMD against a fresh mount in the background, waits
# until FAULT fired, kills the daemon, clears faults, remounts and waits for convergence.
# With GONE_AT_KILL=ID, ID must be absent from the account when the daemon is killed.
crash_case() {
	local name=$1 fault=$2 i
	shift 2
	log "$name"
	rel_mount "$M" "$EMU_URL"
	ls -R "$M/images" >/dev/null
	cat "$M"/images/* >/dev/null 2>&1 || true # cached: the replace needs no download
	fault_add "$fault"
	("$@" >/dev/null 2>&1 &)
	for ((i = 0; i < 300; i++)); do
		(($(fault_hits) >= 1)) && break
		sleep 0.05
	done
	(($(fault_hits) >= 1)) || fail "$name: the fault never fired"
	sleep 0.2
	if [[ -n ${GONE_AT_KILL:-} ]] && api_has_id "$GONE_AT_KILL"; then
		fail "$name: $GONE_AT_KILL not deleted yet when the daemon is killed"
	fi
	kill9_fs "$M"
	faults_clear
	rel_mount "$M" "$EMU_URL"
	for ((i = 0; i < 300 && ($(entries) > 0 || $(pins) > 0); i++)); do sleep 0.1; done
	expect_eq "$name: journal entries after convergence" "$(entries)" 0
	expect_eq "$name: pinned blobs after convergence" "$(pins)" 0
	expect_eq "$name: staged files" "$(cache_tmp_count)" 0
}

replace() { cp "$E2E_T/new.png" "$M/images/x.png"; }
rename() { mv "$M/images/a.png" "$M/images/b.png"; }
rename_onto() { mv "$M/images/a.png" "$M/images/c.png"; }
HOLD='"status","status":503'
STALL='"stall","stall_ms":60000'

seed x.png "$E2E_T/old.png"
crash_case "replace, killed before the DELETE runs" "{\"op\":\"images.delete\",\"mode\":$HOLD}" replace
expect_image x.png "$E2E_T/old.png"
umount_fs "$M"

crash_case "replace, killed after the DELETE ran (reply held)" "{\"op\":\"images.delete\",\"mode\":$STALL}" replace
expect_image x.png "$E2E_T/old.png"
api_image_json x.png | grep -q '"creator": *"ann"' || fail "restored creator"
api_image_json x.png | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
m = dict(d.get("meta") or {})
stamp = m.pop("imagesfs", "").split()  # the old image keeps its own size (fs_times.c)
assert m == {"id": "x.png"} and "s=%d" % os.path.getsize(sys.argv[1]) in stamp, d' "$E2E_T/old.png" ||
	fail "restored metadata"
grep -q "recovered 'images/x.png': the previous image is back" "${FS_LOG[$M]}" || fail "no recovery log line"
umount_fs "$M"

crash_case "replace, killed before the new upload runs" "{\"op\":\"images.upload\",\"mode\":$HOLD}" replace
expect_image x.png "$E2E_T/old.png"
umount_fs "$M"

crash_case "replace, killed after the new upload ran (reply held)" "{\"op\":\"images.upload\",\"mode\":$STALL}" replace
expect_image x.png "$E2E_T/new.png"
umount_fs "$M"

seed a.png "$E2E_T/old.png"
crash_case "rename, killed before the upload runs" "{\"op\":\"images.upload\",\"mode\":$HOLD}" rename
expect_image a.png "$E2E_T/old.png"
expect_gone b.png
umount_fs "$M"

crash_case "rename, killed after the upload ran (reply held)" "{\"op\":\"images.upload\",\"mode\":$STALL}" rename
expect_image b.png "$E2E_T/old.png"
expect_gone a.png
grep -q "recovered the rename of 'images/a.png' to 'images/b.png'" "${FS_LOG[$M]}" || fail "no recovery log line"
ls "$M/images" | grep -qxF a.png && fail "the mount shows a.png"
umount_fs "$M"

api_curl "v1/b.png" -X DELETE -o /dev/null
seed a.png "$E2E_T/old.png"
crash_case "rename, killed before the source DELETE runs" "{\"op\":\"images.delete\",\"mode\":$HOLD}" rename
expect_image b.png "$E2E_T/old.png"
expect_gone a.png
umount_fs "$M"

api_curl "v1/b.png" -X DELETE -o /dev/null
seed a.png "$E2E_T/old.png"
crash_case "rename, killed after the source DELETE ran (reply held)" "{\"op\":\"images.delete\",\"mode\":$STALL}" rename
expect_image b.png "$E2E_T/old.png"
expect_gone a.png
umount_fs "$M"

seed a.png "$E2E_T/new.png"
seed c.png "$E2E_T/old.png"
crash_case "rename onto an image, killed after its DELETE ran (reply held)" \
	"{\"op\":\"images.delete\",\"mode\":$STALL}" rename_onto
expect_image c.png "$E2E_T/old.png"
expect_image a.png "$E2E_T/new.png"
umount_fs "$M"

# The destination's DELETE ran (no fault on it); the upload of a's bytes under c is held.
GONE_AT_KILL=c.png crash_case "rename onto an image, killed before the upload runs (destination deleted)" \
	"{\"op\":\"images.upload\",\"mode\":$HOLD}" rename_onto
expect_image c.png "$E2E_T/old.png"
expect_image a.png "$E2E_T/new.png"
umount_fs "$M"

crash_case "rename onto an image, killed after the upload ran (reply held)" \
	"{\"op\":\"images.upload\",\"mode\":$STALL}" rename_onto
expect_image c.png "$E2E_T/new.png"
expect_gone a.png
umount_fs "$M"
expect_eq "images at the end" "$(api_ids | sort | tr '\n' ' ')" "b.png c.png x.png "

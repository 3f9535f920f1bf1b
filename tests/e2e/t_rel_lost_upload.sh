#!/usr/bin/env bash
# An upload whose response is lost (connection closed after the server stored it, an error
# status after storing, a truncated reply) is reported as success by cp, stored exactly once
# and byte-exact with its metadata, and becomes the cache entry. When every response of the
# upload is lost, cp's exit status still matches what the server holds.
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"

# check_stored ID LOCALFILE: exactly one image ID, byte-exact, filename = basename.
check_stored() {
	local id=$1 src=$2
	expect_eq "images named $id" "$(api_ids | grep -cxF "$id")" 1
	api_blob "$id" "$E2E_T/got" || fail "$id is not stored"
	cmp -s "$src" "$E2E_T/got" || fail "$id: stored bytes differ"
	api_image_json "$id" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["filename"] == sys.argv[1], d' "${id##*/}" || fail "$id: wrong filename"
}

n=0
for rule in '{"op":"images.upload","mode":"close","after":true,"count":1}' \
	'{"op":"images.upload","mode":"status","status":502,"after":true,"count":1}' \
	'{"op":"images.upload","mode":"status","status":500,"after":true,"count":1}' \
	'{"op":"images.upload","mode":"truncate","count":1}'; do
	n=$((n + 1))
	log "lost response: $rule"
	make_png "$E2E_T/p$n.png" 20 20 "$n"
	emu_stats_reset
	fault_add "$rule"
	cp "$E2E_T/p$n.png" "$M/images/lost$n.png" || fail "cp reported failure for a stored upload ($rule)"
	check_stored "lost$n.png" "$E2E_T/p$n.png"
	ups=$(emu_op images.upload)
	((ups >= 2)) || fail "the fault did not fire (uploads: $ups)"
	# Read back: the mount shows one file with the right bytes, served from the cache.
	expect_eq "listed" "$(ls "$M/images" | grep -cxF "lost$n.png")" 1
	emu_stats_reset
	cmp "$E2E_T/p$n.png" "$M/images/lost$n.png" || fail "read back differs"
	expect_eq "blob requests for a just-uploaded file" "$(emu_op images.blob)" 0
done

log "uploads reuse the connection; a reply lost there is not re-sent behind our back"
# Consecutive uploads go over one keep-alive connection (no TCP/TLS handshake per file). When
# that connection dies after the server stored the image, libcurl would re-send the upload
# on a new one without telling the caller (and cp would fail with "already exists"); the
# rewind it needs for that is refused, so the repetition is an ordinary retry whose
# "already exists" is checked against the bytes.
make_png "$E2E_T/k0.png" 20 20 50
make_png "$E2E_T/k1.png" 20 20 51
make_png "$E2E_T/k2.png" 20 20 52
cp "$E2E_T/k0.png" "$M/images/k0.png" || fail "cp k0.png"
emu_stats_reset
cp "$E2E_T/k1.png" "$M/images/k1.png" || fail "cp k1.png"
expect_eq "connections opened by an upload after an upload" "$(emu_stat connections)" 0
fault_add '{"op":"images.upload","mode":"close","after":true,"count":1}'
cp "$E2E_T/k2.png" "$M/images/k2.png" || fail "cp failed for a stored upload (reused connection)"
expect_eq "connections: one, for the retry" "$(emu_stat connections)" 1
expect_eq "upload requests (k1, the lost one, its retry)" "$(emu_op images.upload)" 3
check_stored k2.png "$E2E_T/k2.png"

log "lost response with pending metadata (set before close): stored with the metadata"
make_png "$E2E_T/meta.png" 20 20 77
fault_add '{"op":"images.upload","mode":"close","after":true,"count":1}'
python3 - "$E2E_T/meta.png" "$M/images/meta.png" <<'EOF' || fail "upload with metadata reported failure"
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, open(src, "rb").read())
os.setxattr(fd, "user.metadata", b'{"k":"v","n":1}')
os.close(fd)
EOF
check_stored meta.png "$E2E_T/meta.png"
api_image_json meta.png | python3 -c '
import json, sys
d = json.load(sys.stdin)
meta = {k: v for k, v in d.get("meta", {}).items() if k != "imagesfs"}  # the stamp (issue 9)
assert meta == {"k": "v", "n": 1}, d' || fail "metadata lost with the response"

log "every response lost: cp's exit status matches what is stored"
make_png "$E2E_T/all.png" 20 20 99
fault_add '{"op":"images.upload","mode":"close","after":true}'
start=$(ms_now)
rc=0
timeout 80 cp "$E2E_T/all.png" "$M/images/all.png" 2>"$E2E_T/cp.err" || rc=$?
faults_clear
ms=$(($(ms_now) - start))
log "cp exit $rc after $ms ms: $(cat "$E2E_T/cp.err")"
((rc != 124)) || fail "cp hung"
if ((rc == 0)); then
	check_stored all.png "$E2E_T/all.png"
else
	api_has_id all.png && fail "cp failed (exit $rc) but the image was stored"
	[[ -e $M/images/all.png ]] && fail "a failed upload left a file in the mount"
fi
expect_eq "staged files left" "$(cache_tmp_count)" 0
daemon_alive "$M"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

#!/usr/bin/env bash
# Nothing lost under random faults: with about 10% of all API requests failing (500, 502,
# 503, 429 with Retry-After, connection closed before or after the server acted, truncated
# replies, lost successes, stalls), 200 uploads (cp, and writes that set user.metadata
# before close) from 4 processes each either exit 0 with the image stored byte-exact with
# its filename and metadata, or exit non-zero with nothing stored, nothing listed and no
# staged file left. No duplicates. A second phase fails 70% of upload attempts (before the
# server acts) so that some uploads do fail: each failure leaves nothing behind. Reads of
# uncached images under the 10% faults return exact bytes or EIO.
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

N=200
HEAVY=24
WORKERS=4
emu_start
M=$E2E_T/mnt
mount_fs "$M"

log "making $N + $HEAVY distinct images"
mkdir -p "$E2E_T/src"
python3 - "$E2E_T/src" "$N" "$HEAVY" <<'EOF'
import struct, sys, zlib
d, n, heavy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def chunk(t, b):
    return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
def png(path, w, seed):
    raw = b"".join(b"\x00" + bytes(((x * 7 + y * 13 + seed * 31) & 255) for x in range(w * 3))
                   for y in range(w))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, w, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))
    open(path, "wb").write(data)
for i in range(n):
    png(f"{d}/f{i:03d}.png", 8 + i % 40, i)
for i in range(heavy):
    png(f"{d}/h{i:03d}.png", 12, 1000 + i)
EOF

# upload NAME: h* and even f* with cp; odd f* with open/write/fsetxattr(user.metadata)/close.
upload() {
	local f=$1 i
	i=$((10#${f:1:3}))
	if [[ $f == h* ]] || ((i % 2 == 0)); then
		timeout 120 cp "$E2E_T/src/$f" "$M/images/$f" 2>>"$E2E_T/errors"
	else
		timeout 120 python3 - "$E2E_T/src/$f" "$M/images/$f" "$i" 2>>"$E2E_T/errors" <<'EOF'
import os, sys
src, dst, i = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
try:
    os.write(fd, open(src, "rb").read())
    os.setxattr(fd, "user.metadata", ('{"n":%s,"who":"rel"}' % i).encode())
finally:
    os.close(fd)  # the upload happens here; its failure raises
EOF
	fi
}

# upload_all PREFIX COUNT: uploads PREFIX000.. from $WORKERS processes; "name rc" lines
# go to results.
upload_all() {
	local prefix=$1 count=$2 w pids=()
	for ((w = 0; w < WORKERS; w++)); do
		(
			for ((i = w; i < count; i += WORKERS)); do
				printf -v f '%s%03d.png' "$prefix" "$i"
				rc=0
				upload "$f" || rc=$?
				echo "$f $rc" >>"$E2E_T/results.$prefix$w"
			done
		) &
		pids+=($!)
	done
	wait "${pids[@]}"
}

# About 10% of requests of every kind fail: nine rules of ~1.17% each.
r=0.0117
random_faults="[{\"op\":\"*\",\"status\":500,\"ratio\":$r,\"seed\":1},
 {\"op\":\"*\",\"status\":502,\"ratio\":$r,\"seed\":2},
 {\"op\":\"*\",\"status\":503,\"retry_after\":1,\"ratio\":$r,\"seed\":3},
 {\"op\":\"*\",\"status\":429,\"retry_after\":1,\"ratio\":$r,\"seed\":4},
 {\"op\":\"*\",\"mode\":\"close\",\"ratio\":$r,\"seed\":5},
 {\"op\":\"*\",\"mode\":\"close\",\"after\":true,\"ratio\":$r,\"seed\":6},
 {\"op\":\"*\",\"mode\":\"truncate\",\"ratio\":$r,\"seed\":7},
 {\"op\":\"*\",\"status\":503,\"after\":true,\"retry_after\":1,\"ratio\":$r,\"seed\":8},
 {\"op\":\"*\",\"mode\":\"stall\",\"stall_ms\":400,\"ratio\":$r,\"seed\":9}]"
fault_add "$random_faults"
emu_stats_reset

log "$N uploads from $WORKERS processes with ~10% of requests failing"
start=$(ms_now)
upload_all f "$N"
log "uploads took $(($(ms_now) - start)) ms; API requests: $(emu_total)"
curl -fsS "$EMU_ADMIN/stats" >"$E2E_T/ops.json"

log "reads of uncached images under the same faults (second mount, empty cache): exact or EIO"
M2=$E2E_T/mnt2
rel_mount "$M2" "$EMU_URL" "cache_dir=$E2E_T/cache2"
for ((i = 0; i < N; i += 4)); do
	printf -v f 'f%03d.png' "$i"
	[[ -e $M2/images/$f ]] || continue
	if timeout 60 cat "$M2/images/$f" >"$E2E_T/read" 2>"$E2E_T/read.err"; then
		cmp -s "$E2E_T/src/$f" "$E2E_T/read" || fail "$f: read returned wrong bytes"
	else
		grep -q "Input/output error\|Resource temporarily unavailable\|timed out" "$E2E_T/read.err" ||
			fail "$f: read failed with $(cat "$E2E_T/read.err")"
		log "$f: $(cat "$E2E_T/read.err")"
	fi
done
faults_clear
cache_verify "$E2E_T/cache2"

log "$HEAVY uploads with 70% of upload attempts refused before the server acts"
fault_add '[{"op":"images.upload","status":500,"ratio":0.4,"seed":11},
 {"op":"images.upload","mode":"close","ratio":0.5,"seed":12}]'
upload_all h "$HEAVY"
faults_clear

log "checking every upload against the API"
sort "$E2E_T"/results.* >"$E2E_T/results"
expect_eq "results" "$(wc -l <"$E2E_T/results")" "$((N + HEAVY))"
rel_py "$E2E_T/results" "$E2E_T/src" "$M/images" >"$E2E_T/check.out" <<'EOF' ||
import os, sys, rel_api
results, src, mnt = sys.argv[1:4]
ids = rel_api.ids()
bad, ok, failed = [], {"f": 0, "h": 0}, {"f": 0, "h": 0}
for line in open(results):
    f, rc = line.split()
    rc, i = int(rc), int(f[1:4])
    if rc == 124:
        bad.append(f"{f}: upload hung")
    elif rc == 0:
        ok[f[0]] += 1
        im = rel_api.image(f)
        if im is None:
            bad.append(f"{f}: exit 0 but not stored")
            continue
        if rel_api.blob(f) != open(os.path.join(src, f), "rb").read():
            bad.append(f"{f}: stored bytes differ")
        want = {"n": i, "who": "rel"} if f[0] == "f" and i % 2 else None
        meta = {k: v for k, v in (im.get("meta") or {}).items() if k != "imagesfs"} or None
        if im.get("filename") != f or meta != want:  # "imagesfs": the mtime/size stamp
            bad.append(f"{f}: filename/metadata {im.get('filename')!r} {im.get('meta')!r}")
    else:
        failed[f[0]] += 1
        if f in ids:
            bad.append(f"{f}: upload failed (exit {rc}) but the image is stored")
        if os.path.exists(os.path.join(mnt, f)):
            bad.append(f"{f}: upload failed but the mount still shows it")
n_ok = ok["f"] + ok["h"]
if len(ids) != n_ok or len(set(ids)) != n_ok:
    bad.append(f"{len(ids)} ids ({len(set(ids))} distinct) stored for {n_ok} successful uploads")
for b in bad[:20]:
    print(b)
print(ok["f"], failed["f"], ok["h"], failed["h"])
sys.exit(1 if bad else 0)
EOF
	{ cat "$E2E_T/check.out"; fail "uploads and the API disagree"; }
read -r ok failed hok hfailed < <(tail -n 1 "$E2E_T/check.out")
log "10% phase: $ok uploads succeeded, $failed failed cleanly"
log "70% phase: $hok uploads succeeded, $hfailed failed cleanly"
((ok >= N * 9 / 10)) || fail "only $ok of $N uploads succeeded: retries are not working"
((hfailed > 0)) || log "(no upload of the 70% phase failed: its failure path went unexercised)"
python3 - "$E2E_T/ops.json" "$N" <<'EOF' || fail "faults did not fire enough to test anything"
import json, sys
d, n = json.load(open(sys.argv[1])), int(sys.argv[2])
ups = d["ops"]["images.upload"] + d.get("batch_ops", {}).get("batch.images.upload", 0)
print(f"--- {ups} upload requests for {n} uploads ({ups - n} repeated)")
sys.exit(0 if ups >= n + 5 else 1)
EOF
expect_eq "staged files left" "$(cache_tmp_count)" 0

log "the mount lists exactly the stored images and reads them back exactly"
ls "$M/images" >/dev/null
listed=$(find "$M/images" -type f | wc -l)
expect_eq "files in the mount" "$listed" "$((ok + hok))"
while read -r f rc; do
	((rc == 0)) || continue
	cmp -s "$E2E_T/src/$f" "$M/images/$f" || fail "$f: read back differs"
done <"$E2E_T/results"
cache_verify "$E2E_T/cache"
daemon_alive "$M"
umount_fs "$M2"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
sanitizer_clean "${FS_LOG[$M2]}"
echo PASS

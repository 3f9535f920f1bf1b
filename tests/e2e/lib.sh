# shellcheck shell=bash
# tests/e2e/lib.sh - helpers for the end-to-end mount tests (sourced by t_fs_*.sh).
#
# Each test starts its own emulator on a free port with a temporary data directory and a
# random token, mounts with the token in the environment (never in argv), and cleans up
# everything it started in an EXIT trap: unmount (fusermount3 -u, then -uz), kill, rm -rf.
# Mounts run with -f in the background so the daemon's exit status is observed: a daemon
# that exits non-zero (e.g. an AddressSanitizer leak report) fails the test at unmount.
#
# Binaries come from $IMAGESFS_BIN. Exit 77 (skip) only when /dev/fuse is missing.

set -u

if [[ ! -e /dev/fuse ]]; then
	echo "SKIP: /dev/fuse is missing"
	exit 77
fi
: "${IMAGESFS_BIN:?IMAGESFS_BIN must point to the bin directory of a build}"

E2E_T=$(mktemp -d "${TMPDIR:-/tmp}/imagesfs-e2e.XXXXXX")
ACCOUNT=0123456789abcdef0123456789abcdef
IMAGESFS_EMULATOR_TOKEN="test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export IMAGESFS_EMULATOR_TOKEN
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:exitcode=86}
unset CLOUDFLARE_API_TOKEN CLOUDFLARE_API_KEY CLOUDFLARE_EMAIL CLOUDFLARE_BASE_URL
EMU_PID="" EMU_URL="" EMU_ADMIN=""
declare -A FS_PID=() FS_LOG=()

log() { echo "--- $*"; }

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

e2e_cleanup() {
	local rc=$? m
	for m in "${!FS_PID[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
		kill "${FS_PID[$m]}" 2>/dev/null
		if [[ $rc -ne 0 && -s ${FS_LOG[$m]} ]]; then
			echo "--- daemon log of $m:" >&2
			tail -n 40 "${FS_LOG[$m]}" >&2
		fi
	done
	for m in "$E2E_T"/mnt*; do # daemon-mode mounts the test did not track
		mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m"; }
	done
	if [[ -n $EMU_PID ]]; then
		kill "$EMU_PID" 2>/dev/null
		wait "$EMU_PID" 2>/dev/null
	fi
	rm -rf "$E2E_T"
	exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 1' INT TERM

# emu_start [extra emulator args...]: starts the emulator, sets EMU_URL and EMU_ADMIN.
emu_start() {
	mkdir -p "$E2E_T/data"
	"$IMAGESFS_BIN/imagesfs-emulator" --listen 127.0.0.1:0 --data "$E2E_T/data" \
		--account "$ACCOUNT" "$@" >"$E2E_T/emu.out" 2>"$E2E_T/emu.err" &
	EMU_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		# "|| true": under set -e (rel_lib.sh) a not-yet-created emu.out must not end the test
		EMU_URL=$(head -n 1 "$E2E_T/emu.out" 2>/dev/null || true)
		[[ $EMU_URL == http://* ]] && break
		kill -0 "$EMU_PID" 2>/dev/null || fail "emulator exited: $(cat "$E2E_T/emu.err")"
		sleep 0.1
	done
	[[ $EMU_URL == http://* ]] || fail "emulator did not start"
	EMU_ADMIN=${EMU_URL%/client/v4}/__emulator
}

# mount_fs MOUNTPOINT [-o-options]: mounts in the foreground (background job), waits.
# Without batch= in the options the mount gets batch=$E2E_BATCH (default off: the request
# counts of most tests are for the global API; t_fs_batch*.sh test the batch path);
# E2E_BATCH=default adds nothing (the daemon's own default).
mount_fs() {
	local mnt=$1 opts=${2:-}
	[[ ,$opts, == *,batch=* || ${E2E_BATCH:-} == default ]] ||
		opts="batch=${E2E_BATCH:-off}${opts:+,$opts}"
	mkdir -p "$mnt"
	local log
	log="$E2E_T/fs-$(basename "$mnt").log"
	CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN "$IMAGESFS_BIN/mount.imagesfs" "$ACCOUNT" \
		"$mnt" -f -o "api_url=$EMU_URL,cache_dir=$E2E_T/cache${opts:+,$opts}" \
		>"$log" 2>&1 &
	FS_PID[$mnt]=$!
	FS_LOG[$mnt]=$log
	local i
	for ((i = 0; i < 200; i++)); do
		mountpoint -q "$mnt" && return 0
		kill -0 "${FS_PID[$mnt]}" 2>/dev/null || { cat "$log" >&2; fail "mount of $mnt failed"; }
		sleep 0.05
	done
	fail "mount of $mnt did not appear"
}

# umount_fs MOUNTPOINT: unmounts and checks that the daemon exited 0 (no leaks, no crash).
umount_fs() {
	local mnt=$1 pid=${FS_PID[$1]} i rc
	if [[ ${E2E_BATCH:-off} == on && -n $EMU_PID ]]; then # the batch path was really taken
		(($(emu_stat batch_tokens_live) >= 1)) || fail "E2E_BATCH=on but no batch token was used"
	fi
	fusermount3 -u "$mnt" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		mountpoint -q "$mnt" || break
		sleep 0.1
		fusermount3 -u "$mnt" 2>/dev/null
	done
	mountpoint -q "$mnt" && { fusermount3 -uz "$mnt"; fail "$mnt stayed mounted"; }
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid"
	rc=$?
	unset "FS_PID[$mnt]"
	if [[ $rc -ne 0 ]]; then
		cat "${FS_LOG[$mnt]}" >&2
		fail "mount.imagesfs for $mnt exited with $rc"
	fi
}

# Admin endpoint helpers.
emu_stats_reset() { curl -fsS -X POST "$EMU_ADMIN/stats/reset" >/dev/null || fail "stats reset"; }
# emu_op NAME: count of one API operation (e.g. images.blob) since the last reset, on the
# global API and the batch host together (batch.NAME); emu_op_global / emu_op_batch: one host.
emu_op() {
	curl -fsS "$EMU_ADMIN/stats" | python3 -c 'import json,sys
d = json.load(sys.stdin); n = sys.argv[1]; b = d.get("batch_ops", {})
print(b.get(n, 0) if n.startswith("batch.") else d["ops"].get(n, 0) + b.get("batch." + n, 0))' "$1"
}
emu_op_global() {
	curl -fsS "$EMU_ADMIN/stats" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["ops"].get(sys.argv[1], 0))' "$1"
}
emu_op_batch() { emu_op "batch.$1"; }
# emu_stat FIELD: a top-level number of /__emulator/stats (total, batch_total, sent_429, ...).
emu_stat() {
	curl -fsS "$EMU_ADMIN/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
emu_total() {
	curl -fsS "$EMU_ADMIN/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}
# emu_seed COUNT [PREFIX] [SIZE]
emu_seed() {
	curl -fsS -X POST -d "{\"count\":$1,\"prefix\":\"${2:-seed-}\",\"size\":${3:-100}}" \
		"$EMU_ADMIN/seed" >/dev/null || fail "seeding $1 images"
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
	[[ "$2" == "$3" ]] || fail "$1: got '$2', expected '$3'"
}

# expect_errno ERRNAME PYTHON-CODE: the code must raise OSError with that errno.
expect_errno() {
	python3 - "$1" "$2" <<'EOF' || fail "errno check: $2"
import errno, os, sys
name, code = sys.argv[1], sys.argv[2]
try:
    exec(code)
except OSError as e:
    if e.errno == getattr(errno, name):
        sys.exit(0)
    print(f"expected {name}, got {errno.errorcode.get(e.errno, e.errno)}: {code}")
    sys.exit(1)
print(f"expected {name}, got success: {code}")
sys.exit(1)
EOF
}

# Test images, byte-exact and valid enough for the API's format sniffing.
# make_png FILE [WIDTH] [HEIGHT] [SEED]
make_png() {
	python3 - "$1" "${2:-16}" "${3:-16}" "${4:-0}" <<'EOF'
import struct, sys, zlib
path, w, h, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
raw = b"".join(b"\x00" + bytes(((x * 7 + y * 13 + seed * 31) & 255) for x in range(w * 3))
               for y in range(h))
data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))
open(path, "wb").write(data)
EOF
}

# make_jpeg FILE [SEED]: a baseline JFIF stream (SOI, APP0, COM, EOI).
make_jpeg() {
	python3 - "$1" "${2:-0}" <<'EOF'
import struct, sys
path, seed = sys.argv[1], int(sys.argv[2])
app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
com = ("imagesfs test %d " % seed).encode() * 8
data = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0
        + b"\xff\xfe" + struct.pack(">H", len(com) + 2) + com + b"\xff\xd9")
open(path, "wb").write(data)
EOF
}

# make_gif FILE: a 1x1 GIF89a.
make_gif() {
	python3 -c 'import base64,sys; open(sys.argv[1],"wb").write(base64.b64decode(
	    "R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="))' "$1"
}

# make_pngs DIR COUNT [PREFIX]: COUNT small distinct PNGs (DIR/PREFIXn.png) in one python run.
make_pngs() {
	python3 - "$1" "$2" "${3:-p}" <<'EOF2'
import os, struct, sys, zlib
d, n, pre = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def chunk(t, b):
    return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
os.makedirs(d, exist_ok=True)
for i in range(n):
    raw = b"".join(b"\x00" + bytes(((x * 7 + y * 13 + i * 31 + (i >> 8)) & 255) for x in range(12))
                   for y in range(4))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"n\x00%d" % i) + chunk(b"IDAT", zlib.compress(raw, 0))
            + chunk(b"IEND", b""))
    open(os.path.join(d, "%s%d.png" % (pre, i)), "wb").write(data)
EOF2
}

# emu_verify_blobs DIR [ID-PREFIX]: every DIR/NAME is stored as image ID-PREFIX+NAME with the
# same bytes, read from the emulator's global API (one keep-alive connection, no mount).
emu_verify_blobs() {
	python3 - "$1" "${2:-}" "$EMU_URL/accounts/$ACCOUNT/images" "$IMAGESFS_EMULATOR_TOKEN" <<'EOF2' ||
import http.client, os, sys, urllib.parse
d, pre, base, tok = sys.argv[1:5]
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
bad = []
for name in sorted(os.listdir(d)):
    c.request("GET", u.path + "/v1/" + urllib.parse.quote(pre + name, safe="") + "/blob",
              headers={"Authorization": "Bearer " + tok})
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or body != open(os.path.join(d, name), "rb").read():
        bad.append("%s: HTTP %d, %d bytes" % (name, r.status, len(body)))
if bad:
    print("%d images differ, e.g. %s" % (len(bad), bad[:3]))
    sys.exit(1)
EOF2
		fail "stored images differ from $1"
}

# shellcheck shell=bash
# tests/e2e/rel_lib.sh - helpers for the reliability and security mount tests (t_rel_*.sh),
# on top of lib.sh (emulator start, mount_fs/umount_fs, cleanup trap).
#
# Direct API calls go through curl with the credentials in a 0600 header file (-H @FILE),
# never in argv: the security test greps `ps` for the token. Every wait is bounded.

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
# Processes a test started besides the emulator and the mounts: REL_CONT_PIDS get SIGCONT
# (a test may have stopped them) and REL_KILL_PIDS SIGTERM before lib.sh's cleanup.
REL_CONT_PIDS=() REL_KILL_PIDS=()
rel_cleanup() {
	local p
	for p in "${REL_CONT_PIDS[@]}" "${REL_KILL_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done
	for p in "${REL_KILL_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	[[ -n $EMU_PID ]] && kill -CONT "$EMU_PID" 2>/dev/null
}
# lib.sh's cleanup runs commands that may fail (kill of a gone pid): run it without -e, with
# the script's exit status restored first.
# shellcheck disable=SC2154 # rel_rc is assigned inside the trap string
trap 'rel_rc=$?; set +e; rel_cleanup; (exit "$rel_rc"); e2e_cleanup' EXIT

# rel_mount MOUNTPOINT API_URL [-o-options]: mount_fs (lib.sh) against another API URL
# (a proxy or a fake server); the cache is $E2E_T/cache unless the options name another.
rel_mount() {
	local mnt=$1 url=$2 opts=${3:-} log i
	mkdir -p "$mnt"
	log="$E2E_T/fs-$(basename "$mnt").log"
	[[ $opts == *cache_dir=* ]] || opts="cache_dir=$E2E_T/cache${opts:+,$opts}"
	[[ ,$opts, == *,batch=* ]] || opts="batch=${E2E_BATCH:-off},$opts" # as mount_fs (lib.sh)
	CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN "$IMAGESFS_BIN/mount.imagesfs" "$ACCOUNT" \
		"$mnt" -f -o "api_url=$url,$opts" >"$log" 2>&1 &
	FS_PID[$mnt]=$!
	FS_LOG[$mnt]=$log
	for ((i = 0; i < 200; i++)); do
		mountpoint -q "$mnt" && return 0
		kill -0 "${FS_PID[$mnt]}" 2>/dev/null || { cat "$log" >&2; fail "mount of $mnt failed"; }
		sleep 0.05
	done
	fail "mount of $mnt did not appear"
}

# slowproxy_start BYTES_PER_SECOND: a pacing TCP proxy in front of the emulator
# (rel_slowproxy.py); sets PROXY_URL (the API base through it).
slowproxy_start() {
	local port="" i
	python3 "$(dirname "${BASH_SOURCE[0]}")/rel_slowproxy.py" "$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$EMU_URL")" \
		"$1" >"$E2E_T/proxy.out" 2>"$E2E_T/proxy.err" &
	REL_KILL_PIDS+=($!)
	for ((i = 0; i < 100; i++)); do
		port=$(head -n 1 "$E2E_T/proxy.out" 2>/dev/null || true)
		[[ $port =~ ^[0-9]+$ ]] && break
		sleep 0.05
	done
	[[ $port =~ ^[0-9]+$ ]] || fail "proxy did not start: $(cat "$E2E_T/proxy.err")"
	# shellcheck disable=SC2034 # used by the tests
	PROXY_URL=http://127.0.0.1:$port/client/v4
}

REL_AUTH=$E2E_T/auth.hdr
(
	umask 077
	printf 'Authorization: Bearer %s\n' "$IMAGESFS_EMULATOR_TOKEN" >"$REL_AUTH"
)

# Percent-encodes an id for a URL path (every byte outside [A-Za-z0-9-._~]).
rel_esc() {
	python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

# api_curl PATH-BELOW-images/ [curl args...]: authenticated request, body to stdout.
api_curl() {
	local p=$1
	shift
	curl -sS --max-time 30 -H @"$REL_AUTH" "$@" "$EMU_URL/accounts/$ACCOUNT/images/$p"
}

# api_blob ID OUT: the stored bytes of an image; non-zero when it does not exist.
api_blob() {
	local code
	code=$(api_curl "v1/$(rel_esc "$1")/blob" -o "$2" -w '%{http_code}') || return 1
	[[ $code == 200 ]]
}

# api_image_json ID: the image's JSON result object (exit 1 if absent).
api_image_json() {
	api_curl "v1/$(rel_esc "$1")" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if not d.get("success"):
    sys.exit(1)
print(json.dumps(d["result"]))'
}

# api_ids: every image id, one per line (v2 listing, all pages).
api_ids() {
	rel_py <<'EOF'
import rel_api
for i in rel_api.ids():
    print(i)
EOF
}

# api_has_id ID: 0 when an image with exactly this id exists (listing, not a GET).
api_has_id() {
	local ids
	ids=$(api_ids) || fail "cannot list images"
	grep -qxF -- "$1" <<<"$ids"
}

# Fault rules (see tests/emulator/README.md).
fault_add() {
	curl -fsS --max-time 10 -X POST --data-binary "$1" "$EMU_ADMIN/faults" >/dev/null ||
		fail "cannot add fault rule $1"
}
faults_clear() {
	curl -fsS --max-time 10 -X DELETE "$EMU_ADMIN/faults" >/dev/null || fail "cannot clear faults"
}

# ms_now: wall clock in milliseconds.
ms_now() { echo $(($(date +%s%N) / 1000000)); }

# Cache layout (cache/cache_disk.c): entries in v1/objects/<ss>/<sha256(id)>-<version>-<size>,
# temp and staged files in v1/tmp.
# Both fail when the directory is missing, so a layout change cannot make checks vacuous.
cache_objects() {
	local d=${1:-$E2E_T/cache}/v1/objects
	[[ -d $d ]] || fail "no cache objects directory $d (layout changed?)"
	find "$d" -type f | sort
}
cache_tmp_count() {
	local d=${1:-$E2E_T/cache}/v1/tmp
	[[ -d $d ]] || fail "no cache tmp directory $d (layout changed?)"
	find "$d" -type f | wc -l
}
# cache_has ID [CACHEDIR]: 0 when some version of ID is a committed entry.
cache_has() {
	local h
	h=$(printf '%s' "$1" | sha256sum | cut -c1-64)
	[[ -n $(find "${2:-$E2E_T/cache}/v1/objects" -type f -name "$h-*" 2>/dev/null) ]]
}

# rel_py ARGS...: python3 with rel_api.py importable, script on stdin (see rel_api.py).
rel_py() {
	REL_BASE="$EMU_URL/accounts/$ACCOUNT/images" PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")" \
		python3 - "$@"
}

# journal_entries CACHEDIR: unfinished journal entries on disk: <seq>.intent files (replace,
# rename) plus upload records of the write-back log without their done record (format:
# journal/journal_log.c; a torn tail ends a segment, as at replay).
journal_entries() {
	python3 - "$1/journal" <<'EOF'
import os, struct, sys, zlib
d = sys.argv[1]
names = os.listdir(d) if os.path.isdir(d) else []
n = sum(1 for f in names if f.endswith(".intent"))
ups, dones = set(), set()
for f in sorted(names):
    if not (f.startswith("wb-") and f.endswith(".log")):
        continue
    b = open(os.path.join(d, f), "rb").read()
    at = 0
    while at + 40 <= len(b):
        magic, kind, tlen, seq, dlen, crc = struct.unpack_from("<8sIIQQI", b, at)
        end = at + 40 + tlen + dlen
        if magic != b"imgsfsWB" or kind not in (1, 2) or end > len(b):
            break
        if zlib.crc32(b[at:at + 32] + b"\0" * 8 + b[at + 40:end]) != crc:
            break
        (ups if kind == 1 else dones).add(seq)
        at = end
print(n + len(ups - dones))
EOF
}

# cache_verify CACHEDIR: every committed entry equals the API's bytes of its id (entries of
# ids that no longer exist are only counted). Fails on a partial or wrong entry.
cache_verify() {
	[[ -d $1/v1/objects ]] || fail "no cache objects directory in $1 (layout changed?)"
	rel_py "$1/v1/objects" <<'EOF' || fail "cache entries differ from the stored images"
import hashlib, os, sys, rel_api
byhash = {hashlib.sha256(i.encode()).hexdigest(): i for i in rel_api.ids()}
good = gone = bad = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        i = byhash.get(f.split("-")[0])
        if i is None:
            gone += 1
            continue
        data = open(os.path.join(root, f), "rb").read()
        want = rel_api.blob(i)
        if want is not None and data != want:
            print(f"cache entry {f} of {i!r}: {len(data)} bytes, stored image {len(want)} bytes")
            bad += 1
        else:
            good += 1
print(f"--- cache_verify: {good} entries byte-exact, {gone} of deleted ids, {bad} wrong")
sys.exit(1 if bad else 0)
EOF
}

# daemon_alive MOUNTPOINT: the daemon runs and the mount answers.
daemon_alive() {
	kill -0 "${FS_PID[$1]}" 2>/dev/null || fail "daemon of $1 died: $(tail -n 20 "${FS_LOG[$1]}")"
	timeout 20 stat "$1/stats" >/dev/null || fail "mount $1 does not answer"
}

# sanitizer_clean LOGFILE: no ASan/UBSan/TSan report in it.
sanitizer_clean() {
	! grep -E -q 'runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer' "$1" ||
		fail "sanitizer report in $1: $(grep -E -m3 'runtime error:|Sanitizer' "$1")"
}

# kill9_fs MOUNTPOINT: SIGKILLs the daemon and detaches the dead mount.
kill9_fs() {
	local pid=${FS_PID[$1]} i
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "FS_PID[$1]"
	for ((i = 0; i < 50; i++)); do
		fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1" 2>/dev/null || true
		mountpoint -q "$1" || return 0
		sleep 0.1
	done
	fail "dead mount $1 stayed"
}

is_sanitizer_build() { grep -qa -e __asan_init -e __tsan_init "$IMAGESFS_BIN/mount.imagesfs"; }

# rel_umount MOUNTPOINT: like umount_fs (lib.sh) but bounded: a daemon still running 20 s
# after the unmount is SIGKILLed and the test fails (umount_fs would wait forever).
rel_umount() {
	local mnt=$1 pid=${FS_PID[$1]} i rc
	for ((i = 0; i < 100; i++)); do
		fusermount3 -u "$mnt" 2>/dev/null || true
		mountpoint -q "$mnt" || break
		sleep 0.1
	done
	mountpoint -q "$mnt" && { fusermount3 -uz "$mnt" || true; }
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"
		wait "$pid" 2>/dev/null || true
		unset "FS_PID[$mnt]"
		fail "mount.imagesfs for $mnt still running 20 s after the unmount (killed)"
	fi
	rc=0
	wait "$pid" || rc=$?
	unset "FS_PID[$mnt]"
	((rc == 0)) || { tail -n 30 "${FS_LOG[$mnt]}" >&2; fail "mount.imagesfs for $mnt exited with $rc"; }
}

# vm_kib PID FIELD: a /proc/PID/status memory field (VmRSS, VmHWM) in KiB.
vm_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

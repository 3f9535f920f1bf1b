#!/usr/bin/env bash
# A hostile server (rel_hostile.py) never crashes the daemon, never makes it exhaust memory,
# never makes it write outside its cache directory and never exposes a path outside the
# mount. Modes: ids and names with '..', '/', NUL and control characters, 100 KB names,
# 2,000-level paths; wrong JSON types everywhere; JSON nested 100,000 deep; a 200 MB list
# page; endless pages of new ids; 50 MB, endless, short and garbage-length blobs; a 100 MB
# error body; hostile key and variant names and 1 MB key values. After each mode the mount
# still answers, the daemon's peak RSS stays under a bound, and it exits 0 at unmount.
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

RSS_BOUND_KIB=$((256 * 1024)) # 64 MB list-page cap + parse, with room for sanitizers
# Under AddressSanitizer freed memory sits in a 256 MB quarantine by default, which alone
# would pass the bound; a small quarantine keeps the measure about live memory.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
CANARY=imagesfs-canary-$RANDOM$RANDOM
export REL_CANARY=$CANARY
BOX=$E2E_T/box
mkdir -p "$BOX"
echo names >"$E2E_T/mode"
python3 "$(dirname "$0")/rel_hostile.py" "$E2E_T/mode" >"$E2E_T/hostile.out" 2>"$E2E_T/hostile.err" &
REL_KILL_PIDS+=($!)
port=""
for ((i = 0; i < 100; i++)); do
	port=$(head -n 1 "$E2E_T/hostile.out" 2>/dev/null || true)
	[[ $port =~ ^[0-9]+$ ]] && break
	sleep 0.05
done
[[ $port =~ ^[0-9]+$ ]] || fail "hostile server did not start: $(cat "$E2E_T/hostile.err")"
URL=http://127.0.0.1:$port/client/v4
M=$E2E_T/mnt
touch "$E2E_T/marker"

# explore: what a user might do; failures are fine, hangs and crashes are not (bounded by
# watch below: a process blocked inside a FUSE request ignores timeout(1)).
explore() {
	ls -la "$M" "$M/images" "$M/keys" "$M/variants" >/dev/null 2>&1 || true
	find "$M" -maxdepth 50 -print0 >"$E2E_T/find.out" 2>/dev/null || true
	local f n=0
	while IFS= read -r -d '' f && ((n < 60)); do
		[[ -f $f ]] || continue
		timeout 30 head -c 100000 "$f" >/dev/null 2>&1 || true
		timeout 10 getfattr --absolute-names -d "$f" >/dev/null 2>&1 || true
		n=$((n + 1))
	done <"$E2E_T/find.out"
	timeout 10 cat "$M/stats" >/dev/null 2>&1 || true
	timeout 10 stat "$M/images/../../etc/passwd" >/dev/null 2>&1 || true
	timeout 10 cat "$M/images/$CANARY" >/dev/null 2>&1 || true
}

# contained: every path the mount shows is inside it, no symlink, no '.'/'..' entries
# other than the directory links themselves.
contained() {
	python3 - "$M" "$E2E_T/find.out" <<'EOF' || fail "the mount exposes a path outside itself"
import os, sys
m = os.path.realpath(sys.argv[1])
bad = 0
for p in open(sys.argv[2], "rb").read().split(b"\0"):
    if not p:
        continue
    if os.path.islink(p):
        print("symlink:", p[:200]); bad += 1
    rp = os.path.realpath(p)
    if rp != os.fsencode(m) and not rp.startswith(os.fsencode(m) + b"/"):
        print("outside:", p[:200], "->", rp[:200]); bad += 1
    if os.path.basename(p) in (b".", b".."):
        print("dot entry:", p[:200]); bad += 1
sys.exit(1 if bad else 0)
EOF
}

# watch MODE: runs explore in the background; fails (and SIGKILLs the daemon, which aborts
# the FUSE connection and frees every blocked process) when it takes over 30 s or the
# daemon's RSS passes the bound.
watch() {
	local pid=${FS_PID[$M]} epid t0 rss=0
	explore &
	epid=$!
	t0=$(ms_now)
	while kill -0 "$epid" 2>/dev/null; do
		rss=$(vm_kib "$pid" VmRSS 2>/dev/null || echo 0)
		if ((${rss:-0} >= RSS_BOUND_KIB || $(ms_now) - t0 > 30000)); then
			kill -9 "$pid" 2>/dev/null || true
			wait "$epid" 2>/dev/null || true
			unset "FS_PID[$M]"
			fusermount3 -uz "$M" 2>/dev/null || true
			fail "mode $1: after $(($(ms_now) - t0)) ms the daemon's RSS is $((rss / 1024)) MiB and the mount still busy (bounds: 30 s, $((RSS_BOUND_KIB / 1024)) MiB); killed"
		fi
		sleep 0.2
	done
	wait "$epid" || true
	log "explored in $(($(ms_now) - t0)) ms; $(tr -cd '\0' <"$E2E_T/find.out" | wc -c) paths"
}

for mode in ${REL_HOSTILE_MODES:-names types deep huge blobs keys endless}; do
	log "mode $mode"
	echo "$mode" >"$E2E_T/mode"
	rel_mount "$M" "$URL" "cache_dir=$BOX/cache,dir_ttl=1"
	pid=${FS_PID[$M]}
	watch "$mode"
	kill -0 "$pid" 2>/dev/null || fail "daemon died in mode $mode: $(tail -n 20 "${FS_LOG[$M]}")"
	timeout 20 stat "$M/stats" >/dev/null || fail "mount does not answer after mode $mode"
	hwm=$(vm_kib "$pid" VmHWM)
	log "peak RSS $((hwm / 1024)) MiB"
	((hwm < RSS_BOUND_KIB)) || fail "daemon peak RSS $((hwm / 1024)) MiB in mode $mode (bound $((RSS_BOUND_KIB / 1024)) MiB)"
	contained
	case $mode in
	names)
		for f in ok.png dup sub/ok.png fname1 fname2; do
			[[ -f $M/images/$f ]] || fail "the valid image '$f' is missing among hostile ones"
		done
		[[ $(getfattr --only-values -n user.filename "$M/images/fname1" 2>/dev/null) == *"$CANARY" ]] ||
			log "(a hostile filename is not shown verbatim in user.filename)"
		;;
	blobs)
		for f in x1 x2 x3 x4; do
			timeout 60 cat "$M/images/$f.png" >/dev/null 2>&1 && fail "reading hostile blob $f succeeded"
			cache_has "$f.png" "$BOX/cache" && fail "hostile blob $f entered the cache"
		done
		if timeout 60 cat "$M/images/x5.png" >"$E2E_T/x5" 2>/dev/null; then
			cmp -s "$E2E_T/x5" <(python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(
			"89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
			"0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"))') ||
				fail "x5 (Content-Length: -1) read back wrong bytes"
		fi
		;;
	keys)
		[[ -f $M/keys/ok && -f $M/variants/ok ]] || fail "valid keys/variants hidden by hostile names"
		;;
	esac
	rel_umount "$M"
	sanitizer_clean "${FS_LOG[$M]}"
	mv "${FS_LOG[$M]}" "$E2E_T/fs-$mode.log"
done

log "nothing written outside the cache directory"
for p in "/tmp/$CANARY" "$E2E_T/$CANARY" "$BOX/$CANARY" "/$CANARY" "$M/$CANARY"; do
	[[ -e $p ]] && fail "$p was created"
done
found=$(for d in / /tmp "${HOME:-/root}" "$E2E_T" "${IMAGESFS_SRC:-/}" "$PWD"; do
	find "$d" -maxdepth 4 -xdev -name "$CANARY*" 2>/dev/null
done | head -n 3)
[[ -z $found ]] || fail "files named after a hostile id: $found"
odd=$(find "$BOX" -newer "$E2E_T/marker" -type f | grep -vE "^$BOX/cache/(v1/(objects/[0-9a-f]{2}/[0-9a-f]{64}(-[0-9a-f]+)+|lock)|attrs)$" || true)
[[ -z $odd ]] || fail "unexpected files in the cache directory: $(head -n 5 <<<"$odd")"
expect_eq "temp files in the cache" "$(cache_tmp_count "$BOX/cache")" 0
echo PASS

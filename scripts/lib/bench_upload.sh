#!/usr/bin/env bash
# bench_upload.sh - focused benchmark of issue 8 item 4: N x 1 MB copied into images/ by 8
# parallel `cp` (xargs -P 8, an eighth each) against 8 parallel `curl -F` of the same files
# (one keep-alive curl per eighth), as scripts/bench sections 4 and 7 measure it, repeated.
# Each run gets a fresh emulator (and mount); with several --bin directories the runs
# alternate between them, so that the load of a shared machine falls on each alike. One set
# of source files serves every run, and every run's cache stays until the end: deleting
# files near a measured run makes ext4 (without a journal) scan the recently deleted inodes
# on every create.
#
# Per run it prints wall seconds, CPU seconds of the daemon, of the writers (cp or curl) and
# of the emulator, the daemon's context switches and the TCP connections the API requests
# used; then per binary directory the medians and the median of the per-round ratios.
#
# usage: scripts/lib/bench_upload.sh [--bin DIR]... [--rounds N] [--n N] [--bulk] [--seq]
#                                    [--latency-ms N] [--perf FILE]
#   --bin DIR   mount.imagesfs and imagesfs-emulator from DIR (default build-bench/bin);
#               repeat to compare builds
#   --bulk      section 7's setting: emulator --rate-limit 1200/300, the mount's defaults
#               (batch on), curl on the batch host with 2 batch tokens; default: section 4's
#               (rate_limit=off,batch=off, curl on the global API)
#   --seq       one cp and one curl over all files instead of 8 in parallel
#   --perf FILE perf record -g of the daemon during the first run into FILE
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.." || exit 1
bins=() rounds=5 n=200 bulk=0 latency=20 perf_out="" par=8
while (($#)); do
	case $1 in
	--bin) bins+=("$(cd "$2" && pwd)") || exit 2; shift ;;
	--rounds) rounds=$2; shift ;;
	--n) n=$2; shift ;;
	--bulk) bulk=1 ;;
	--seq) par=1 ;;
	--latency-ms) latency=$2; shift ;;
	--perf) perf_out=$2; shift ;;
	*) echo "bench_upload: unknown argument $1 (see the header)" >&2; exit 2 ;;
	esac
	shift
done
((${#bins[@]})) || bins=("$PWD/build-bench/bin")
account=0123456789abcdef0123456789abcdef
work=$(mktemp -d /tmp/imagesfs-upbench.XXXXXX) || exit 1
chmod 700 "$work"
emu_pid="" mnt=""
cleanup() {
	[[ -n $mnt ]] && mountpoint -q "$mnt" && fusermount3 -u "$mnt"
	[[ -n $emu_pid ]] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
	[[ -n $mnt ]] && mountpoint -q "$mnt" && return
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A random token for this run: in the environment and in 0600 files, never in argv.
export IMAGESFS_EMULATOR_TOKEN CLOUDFLARE_API_TOKEN
IMAGESFS_EMULATOR_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN
(umask 077 && printf 'header = "Authorization: Bearer %s"\n' "$IMAGESFS_EMULATOR_TOKEN" >"$work/auth")
hz=$(getconf CLK_TCK)
cpu_of() { awk -v hz="$hz" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null; }
csw_of() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
stat_of() { curl -fsS "$emu_origin/__emulator/stats" | python3 -c 'import json, sys
print(json.load(sys.stdin).get(sys.argv[1], "-"))' "$1"; }

python3 - "$work/src" "$n" <<'PY'
import os, struct, sys, zlib
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
sig = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
sig += struct.pack(">I", zlib.crc32(sig[12:]) & 0xffffffff)
for i in range(n):
    with open(os.path.join(d, "b%05d.png" % i), "wb") as f:
        f.write(sig + os.urandom(1024 * 1024 - len(sig) - 16) + b"%16d" % i)
PY
find "$work/src" -type f | sort >"$work/list"
per=$(((n + par - 1) / par))

emu_start() { # bin
	local extra=() i
	((bulk)) && extra=(--rate-limit 1200/300)
	rm -f "$work/emu.out"
	"$1/imagesfs-emulator" --listen 127.0.0.1:0 --account "$account" --latency-ms "$latency" \
		--allowed 10000000 "${extra[@]}" >"$work/emu.out" 2>>"$work/emu.log" &
	emu_pid=$!
	for ((i = 0; i < 100; i++)); do [[ -s $work/emu.out ]] && break; sleep 0.05; done
	emu_base=$(head -n 1 "$work/emu.out")
	emu_origin=${emu_base%/client/v4}
}
emu_stop() { kill "$emu_pid"; wait "$emu_pid" 2>/dev/null; emu_pid=""; }

# timed OUT CMD...: OUT = "wall cpu-of-children"
timed() {
	local -n _o=$1
	shift
	/usr/bin/time -f '%e %U %S' -o "$work/time" "$@" || return 1
	_o=$(awk '{ printf "%.3f %.3f", $1, $2 + $3 }' "$work/time")
}

run_fs() { # label bin run
	local c0 c1 e0 e1 x0 x1 t="FAIL 0" pp="" fs_pid mo stored
	emu_start "$2"
	mnt=$work/mnt
	mkdir -p "$mnt" "$work/cache.$3"
	mo="api_url=$emu_base,cache_dir=$work/cache.$3,cache_size=4096M,dir_ttl=600"
	((bulk)) || mo="$mo,rate_limit=off,batch=off"
	"$2/mount.imagesfs" "$account" "$mnt" -o "$mo" >>"$work/mount.log" 2>&1 ||
		{ echo "bench_upload: mount failed: $(tail -n 2 "$work/mount.log")" >&2; exit 1; }
	fs_pid=$(pgrep -n -f -- "mount.imagesfs $account $mnt")
	ls "$mnt/images" >/dev/null
	if [[ -n $perf_out && $3 == 1 ]]; then
		perf record -g -p "$fs_pid" -o "$perf_out" 2>>"$work/perf.log" &
		pp=$!
		sleep 0.5
	fi
	c0=$(cpu_of "$fs_pid") e0=$(cpu_of "$emu_pid") x0=$(csw_of "$fs_pid")
	timed t xargs -d '\n' -P "$par" -n "$per" cp -t "$mnt/images/" -- <"$work/list" ||
		echo "bench_upload: cp failed" >&2
	c1=$(cpu_of "$fs_pid") e1=$(cpu_of "$emu_pid") x1=$(csw_of "$fs_pid")
	[[ -n $pp ]] && { kill -INT "$pp"; wait "$pp"; }
	stored=$(curl -fsS "$emu_origin/__emulator/health" | python3 -c 'import json, sys
print(json.load(sys.stdin)["images"])')
	[[ $stored == "$n" ]] || echo "bench_upload: $stored images stored, expected $n" >&2
	printf '%-10s fs   run %2d: wall %6.3f s  daemon %5.3f s  cp   %5.3f s  emulator %5.3f s  daemon csw %5d  connections %s\n' \
		"$1" "$3" "${t% *}" "$(sub "$c0" "$c1")" "${t#* }" "$(sub "$e0" "$e1")" $((x1 - x0)) \
		"$(stat_of connections)"
	echo "$1 fs ${t% *} $(sub "$c0" "$c1") ${t#* } $(sub "$e0" "$e1")" >>"$work/results"
	fusermount3 -u "$mnt"
	while kill -0 "$fs_pid" 2>/dev/null; do sleep 0.05; done
	mnt=""
	emu_stop
}

run_curl() { # label bin run
	local e0 e1 t="FAIL 0" i f url toks=() files ok
	emu_start "$2"
	url="$emu_base/accounts/$account/images/v1"
	toks=("$work/auth")
	if ((bulk)); then
		url="$emu_origin/images/v1"
		toks=()
		for i in 0 1; do
			(umask 077 && curl -fsS -K "$work/auth" "$emu_base/accounts/$account/images/v1/batch_token" |
				python3 -c 'import json, sys
print("header = \"Authorization: Bearer %s\"" % json.load(sys.stdin)["result"]["token"])' >"$work/tok$i")
			toks+=("$work/tok$i")
		done
	fi
	mapfile -t files <"$work/list"
	: >"$work/curl.list"
	for ((i = 0; i < par; i++)); do
		for f in "${files[@]:i*per:per}"; do
			[[ $f == "${files[i * per]}" ]] || echo next # options reset; the connection stays
			cat "${toks[i % ${#toks[@]}]}"
			printf 'silent\nshow-error\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'
			printf 'url = "%s"\nform = "file=@%s"\nform = "id=c-%s"\n' "$url" "$f" "${f##*/}"
		done >"$work/curl.$i"
		echo "$work/curl.$i" >>"$work/curl.list"
	done
	e0=$(cpu_of "$emu_pid")
	# shellcheck disable=SC2016 # $1 is the inner sh's
	timed t xargs -d '\n' -P "$par" -n 1 sh -c 'exec curl -K "$1" >"$1.codes"' sh <"$work/curl.list"
	e1=$(cpu_of "$emu_pid")
	ok=$(cat "$work"/curl.*.codes | grep -c '^200$')
	[[ $ok == "$n" ]] || echo "bench_upload: curl: $ok of $n uploads answered 200" >&2
	printf '%-10s curl run %2d: wall %6.3f s                  curl %5.3f s  emulator %5.3f s                   connections %s\n' \
		"$1" "$3" "${t% *}" "${t#* }" "$(sub "$e0" "$e1")" "$(stat_of connections)"
	echo "$1 curl ${t% *} ${t#* } $(sub "$e0" "$e1")" >>"$work/results"
	rm -f "$work"/curl.*
	emu_stop
}

echo "bench_upload: $n x 1 MB, $par writer(s), $latency ms per request," \
	"$( ((bulk)) && echo 'real limits, mount defaults (batch on)' || echo 'rate_limit=off,batch=off')," \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
	for ((b = 0; b < ${#bins[@]}; b++)); do
		label=${bins[b]%/bin} # build-bench/bin -> build-bench
		label=${label##*/}
		run_fs "$label" "${bins[b]}" $(((r - 1) * ${#bins[@]} + b + 1))
		run_curl "$label" "${bins[b]}" "$r"
	done
done
python3 - "$work/results" <<'PY'
import collections, statistics as st, sys
runs = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] not in order:
        order.append(f[0])
    runs[(f[0], f[1])].append([float(x) if x != "FAIL" else float("nan") for x in f[2:]])
for v in order:
    fs, cu = runs[(v, "fs")], runs[(v, "curl")]
    med = lambda rows, i: st.median(r[i] for r in rows)
    ratios = [a[0] / b[0] for a, b in zip(fs, cu)]
    print("%-10s median of %d: cp %.3f s (daemon %.3f, cp %.3f, emulator %.3f CPU s) | curl -F %.3f s "
          "(curl %.3f, emulator %.3f CPU s) | ratio %.2fx (runs: %s)" % (
              v, len(fs), med(fs, 0), med(fs, 1), med(fs, 2), med(fs, 3), med(cu, 0), med(cu, 1),
              med(cu, 2), st.median(ratios), " ".join("%.2f" % x for x in ratios)))
PY
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# A reader killed in the middle of a download leaves no temp file behind once the daemon's
# download ends (no remount needed). Then kill -9 of the daemon in the middle of uploads and
# downloads, three times. The mount talks
# to the emulator through a pacing proxy (2 MB/s per connection), so each kill is taken
# while a 3 MB download is partly written into a fill-* temp file and an upload is staged or
# on the wire. After each remount: temp files are gone (no garbage grows across crashes),
# every cache entry is byte-exact with the server (no partial blob is committed or served),
# every cp that exited 0 before the kill is stored byte-exact, whatever the server holds is
# whole, and the mount reads every image and uploads normally.
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

CYCLES=3
emu_start
slowproxy_start 2000000
M=$E2E_T/mnt
mkdir -p "$E2E_T/src"
# big_png FILE SIZE: a PNG signature and header followed by random bytes (the API only
# sniffs the first bytes), so multi-megabyte images cost nothing to make.
big_png() {
	{
		printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR'
		head -c "$2" /dev/urandom
	} >"$1"
}

# loop_upload TAG: cp's fresh images until $E2E_T/stop exists; "name rc" to up.TAG.
loop_upload() {
	local tag=$1 j=0 f rc
	while [[ ! -e $E2E_T/stop ]] && ((j < 100)); do
		f=u$tag-$j.png
		big_png "$E2E_T/src/$f" $((100000 + RANDOM * 10))
		rc=0
		timeout 60 cp "$E2E_T/src/$f" "$M/images/$f" 2>/dev/null || rc=$?
		echo "$f $rc" >>"$E2E_T/up.$tag"
		j=$((j + 1))
	done
}
# loop_read CYCLE: reads the cycle's big images until $E2E_T/stop exists.
loop_read() {
	local i=0
	while [[ ! -e $E2E_T/stop ]] && ((i < 20)); do
		timeout 60 cat "$M/images/big$1-$((i % 3)).png" >/dev/null 2>&1 || true
		i=$((i + 1))
	done
}

log "a reader killed in the middle of a download: tmp/ drains without a remount"
for i in 0 1 2; do
	big_png "$E2E_T/src/int-$i.png" 3000000
	api_curl v1 -F "file=@$E2E_T/src/int-$i.png" -F "id=int-$i.png" -o /dev/null || fail "seeding int-$i.png"
done
rel_mount "$M" "$PROXY_URL"
ls "$M/images" >/dev/null
for i in 0 1 2; do
	cat "$M/images/int-$i.png" >/dev/null 2>&1 &
	rpid=$!
	for ((try = 0; try < 100; try++)); do
		[[ -n $(find "$E2E_T/cache/v1/tmp" -name 'fill-*' -size +64k 2>/dev/null) ]] && break
		sleep 0.05
	done
	kill -9 "$rpid" 2>/dev/null || true
	wait "$rpid" 2>/dev/null || true
done
for ((try = 0; try < 200; try++)); do
	(($(cache_tmp_count) == 0)) && break
	sleep 0.1
done
expect_eq "temp files 20 s after the killed readers" "$(cache_tmp_count)" 0
cache_verify "$E2E_T/cache"
for i in 0 1 2; do
	cmp -s "$E2E_T/src/int-$i.png" "$M/images/int-$i.png" || fail "int-$i reads back wrong"
done
rel_umount "$M"

for ((c = 1; c <= CYCLES; c++)); do
	log "cycle $c: 3 new 3 MB images on the server; mount through the proxy; read and upload"
	for i in 0 1 2; do
		big_png "$E2E_T/src/big$c-$i.png" 3000000
		api_curl v1 -F "file=@$E2E_T/src/big$c-$i.png" -F "id=big$c-$i.png" -o /dev/null ||
			fail "seeding big$c-$i.png"
	done
	rel_mount "$M" "$PROXY_URL"
	ls "$M/images" >/dev/null
	rm -f "$E2E_T/stop"
	pids=()
	loop_upload "$c-a" &
	pids+=($!)
	loop_upload "$c-b" &
	pids+=($!)
	pid=${FS_PID[$M]}
	for ((try = 0; try < 200; try++)); do # let some uploads finish before the kill
		(($(cat "$E2E_T"/up.* 2>/dev/null | grep -c ' 0$') >= 4 * c)) && break
		sleep 0.1
	done
	loop_read "$c" & # each 3 MB download lasts ~1.5 s through the proxy
	pids+=($!)
	caught=""
	for ((try = 0; try < 100; try++)); do
		sleep 0.05
		kill -STOP "$pid"
		REL_CONT_PIDS=("$pid")
		fills=$(find "$E2E_T/cache/v1/tmp" -name 'fill-*' -size +64k 2>/dev/null | wc -l)
		stages=$(find "$E2E_T/cache/v1/tmp" -name 'stage-*' 2>/dev/null | wc -l)
		if ((fills > 0 && stages > 0)); then
			caught="$fills partial download(s) and $stages staged upload(s) in tmp/"
			break
		fi
		kill -CONT "$pid"
	done
	[[ -n $caught ]] || fail "no partial download and staged upload at once in 5 s"
	log "kill -9 with $caught"
	kill9_fs "$M"
	REL_CONT_PIDS=()
	touch "$E2E_T/stop"
	wait "${pids[@]}"
	log "left behind in tmp/: $(cache_tmp_count) file(s)"

	mount_fs "$M"
	expect_eq "temp files after remount (cycle $c)" "$(cache_tmp_count)" 0
	cache_verify "$E2E_T/cache"
	log "every cp that exited 0 is stored byte-exact; whatever the server holds is whole"
	cat "$E2E_T"/up.* >"$E2E_T/uploads"
	rel_py "$E2E_T/uploads" "$E2E_T/src" <<'EOF' || fail "uploads lost or partial after the crash"
import os, sys, rel_api
uploads, src = sys.argv[1:3]
ids = set(rel_api.ids())
bad, ok = [], 0
for line in open(uploads):
    f, rc = line.split()
    if rc == "0":
        ok += 1
        if f not in ids:
            bad.append(f"{f}: cp exited 0 but the image is not stored")
for i in ids:
    if rel_api.blob(i) != open(os.path.join(src, i), "rb").read():
        bad.append(f"{i}: the stored image differs from its source")
print(f"--- {ok} cp's exited 0 before the kills; {len(ids)} images stored, all whole")
for b in bad[:20]:
    print(b)
sys.exit(1 if bad else 0)
EOF
	log "the remounted mount reads every image byte-exact and uploads"
	ls "$M/images" >/dev/null
	n=0
	while IFS= read -r f; do
		cmp -s "$E2E_T/src/$f" "$M/images/$f" || fail "$f reads back wrong after the crash"
		n=$((n + 1))
	done < <(api_ids)
	big_png "$E2E_T/src/after$c.png" 100000
	cp "$E2E_T/src/after$c.png" "$M/images/after$c.png" || fail "upload after remount"
	log "$n images read back"
	umount_fs "$M"
	sanitizer_clean "${FS_LOG[$M]}"
done
expect_eq "temp files at the end" "$(cache_tmp_count)" 0
echo PASS

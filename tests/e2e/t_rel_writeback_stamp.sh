#!/usr/bin/env bash
# -o writeback keeps the stamp (fs_times.c): images uploaded by the journal's workers carry
# the file's size and mtime in their metadata like synchronous uploads, and an old image the
# journal puts back (a refused replace) carries its own old size and mtime, never the new
# file's. Checked after a remount with an EMPTY cache dir, so the sizes and mtimes can only
# come from the listing; the stamp costs no request beyond the uploads. The same for the old
# image a synchronous replace puts back (fs_upload.c, JOURNAL_REPLACE).
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

N=6
emu_start --latency-ms 100 # uploads still pending when `touch -d` runs
M=$E2E_T/mnt
S=$E2E_T/src
I=$M/images
[[ -n $E2E_T && -n $S && -n $I ]] || fail "empty paths"
# ops_check WHAT CONDITION: CONDITION is Python over o (ops since the last reset) and t (total).
ops_check() {
	curl -fsS "$EMU_ADMIN/stats" | python3 -c 'import json,sys
d=json.load(sys.stdin); o=d["ops"]; t=d["total"]
sys.exit(0 if eval(sys.argv[1]) else "requests: %s total %d" % ({k:v for k,v in o.items() if v}, t))' "$2" ||
		fail "$1"
}
# same_stat SRC DST: `stat -c '%s %Y'` of DST equals SRC's.
same_stat() {
	local a b
	a=$(stat -c '%s %Y' "$1") || fail "stat $1"
	b=$(stat -c '%s %Y' "$2") || fail "stat $2"
	[[ $a == "$b" ]] || fail "$2: size/mtime '$b', expected '$a' (as $1)"
}
remount_empty_cache() {
	umount_fs "$M"
	rm -rf "${E2E_T:?}/cache"
	mount_fs "$M" "$1"
}

log "fixtures: $N PNGs of different sizes and mtimes"
make_pngs "$S" "$N" p
for ((i = 0; i < N; i++)); do
	head -c $((i * 37)) /dev/urandom >>"$S/p$i.png" # trailing bytes: sizes differ
	touch -d "@$((1500000000 + i * 86400))" "$S/p$i.png"
done
printf 'not an image\n' >"$E2E_T/bad.png"

mount_fs "$M" writeback
mkdir "$I/wb"
log "cp -p of $N files with -o writeback, touch -d of one, imagesfs sync"
emu_stats_reset
cp -p "$S"/p*.png "$I/wb/" || fail "cp -p"
touch -d 2020-01-01 "$S/p0.png" "$I/wb/p0.png" || fail "touch -d"
"$IMAGESFS_BIN/imagesfs" sync "$M" || fail "imagesfs sync"
# one upload per file; the touch -d after close is the one PATCH
ops_check "write-back uploads" "o['images.upload'] == $N and o['images.edit'] == 1 and t == $N + 1"
for ((i = 0; i < N; i++)); do same_stat "$S/p$i.png" "$I/wb/p$i.png"; done

log "remount with an empty cache dir: sizes and mtimes from the listing"
remount_empty_cache writeback
emu_stats_reset
for ((i = 0; i < N; i++)); do same_stat "$S/p$i.png" "$I/wb/p$i.png"; done
ops_check "stat after remount" "o['images.list_v2'] == 1 and t == 1"

log "cp -p onto an existing image with -o writeback: the new size and mtime, no PATCH"
cp "$S/p5.png" "$E2E_T/q.png" && head -c 11 /dev/urandom >>"$E2E_T/q.png"
touch -d "@1400000000" "$E2E_T/q.png"
emu_stats_reset
cp -p "$E2E_T/q.png" "$I/wb/p3.png" || fail "cp -p onto p3.png"
"$IMAGESFS_BIN/imagesfs" sync "$M" || fail "imagesfs sync after the replace"
ops_check "write-back replace" "o['images.upload'] == 1 and o['images.delete'] == 1 and o.get('images.edit', 0) == 0"
cp -p "$E2E_T/q.png" "$S/p3.png" # the expected state from here on
remount_empty_cache writeback
same_stat "$S/p3.png" "$I/wb/p3.png"
cmp "$S/p3.png" "$I/wb/p3.png" || fail "replaced p3.png differs"

log "write-back replace refused by the API: the old image is back with its old size and mtime"
cp "$E2E_T/bad.png" "$I/wb/p1.png" || fail "cp of the refused bytes"
"$IMAGESFS_BIN/imagesfs" sync "$M" && fail "imagesfs sync exited 0 for a refused upload"
remount_empty_cache ""
for ((i = 0; i < N; i++)); do same_stat "$S/p$i.png" "$I/wb/p$i.png"; done
cmp "$S/p1.png" "$I/wb/p1.png" || fail "restored p1.png differs"

log "the same without write-back: the journal restores the old image with its stamp"
cp "$E2E_T/bad.png" "$I/wb/p2.png" 2>/dev/null && fail "cp of the refused bytes succeeded"
remount_empty_cache ""
for ((i = 0; i < N; i++)); do same_stat "$S/p$i.png" "$I/wb/p$i.png"; done
cmp "$S/p2.png" "$I/wb/p2.png" || fail "restored p2.png differs"
umount_fs "$M"
log "ok"

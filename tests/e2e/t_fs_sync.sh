#!/usr/bin/env bash
# rsync-grade sync (issue 9): mtimes and sizes stored with the images (the stamp in their
# metadata), utimensat, local scratch files (".NAME"), chmod/chown accepted. Real rsync, cp,
# touch, tar, du, setfattr against a real mount; request counts from the emulator's stats.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
command -v rsync >/dev/null || fail "rsync is missing (scripts/deps installs it)"

N=300
emu_start
M=$E2E_T/mnt
S=$E2E_T/src
I=$M/images
[[ -n $E2E_T && -n $S && -n $I ]] || fail "empty paths"
auth=(-H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN")
api() { curl -fsS "${auth[@]}" "$EMU_URL/accounts/$ACCOUNT/images/v1/$1"; }
# ops_check WHAT CONDITION: CONDITION is Python over o (ops since the last reset) and t (total).
ops_check() {
	curl -fsS "$EMU_ADMIN/stats" | python3 -c 'import json,sys
d=json.load(sys.stdin); o=d["ops"]; t=d["total"]
sys.exit(0 if eval(sys.argv[1]) else "requests: %s total %d" % ({k:v for k,v in o.items() if v}, t))' "$2" ||
		fail "$1"
}
# same_tree A B: every file of A is in B with the same size and mtime (seconds).
same_tree() {
	python3 -c 'import os, sys
a, b = sys.argv[1], sys.argv[2]
bad = []
for name in sorted(os.listdir(a)):
    sa, sb = os.stat(os.path.join(a, name)), os.stat(os.path.join(b, name))
    if sa.st_size != sb.st_size or int(sa.st_mtime) != int(sb.st_mtime):
        bad.append((name, sa.st_size, int(sa.st_mtime), sb.st_size, int(sb.st_mtime)))
if bad:
    sys.exit("differ (name, size, mtime, size, mtime): %s ... %d in all" % (bad[:3], len(bad)))' \
		"$1" "$2" || fail "sizes/mtimes of $2 differ from $1"
}

log "fixtures: $N PNGs of different sizes and mtimes"
mkdir -p "$S"
python3 -c 'import os, struct, sys, zlib
d, n = sys.argv[1], int(sys.argv[2])
def chunk(t, b):
    return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
for i in range(n):
    w = 4 + i % 13
    raw = b"".join(b"\x00" + bytes(((x * 7 + y * 13 + i * 31) & 255) for x in range(w * 3))
                   for y in range(w))
    p = os.path.join(d, "img%03d.png" % i)
    open(p, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, w, 8, 2, 0, 0, 0))
                        + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))
    t = 1500000000 + i * 86400 + 0.25
    os.utime(p, (t, t))' "$S" "$N" || fail "fixtures"

mount_fs "$M"
ls "$I" >/dev/null

log "rsync -a of $N images into a new directory: $N uploads and nothing else per file"
emu_stats_reset
rsync -a "$S/" "$I/sync/" || fail "rsync -a exited $?"
ops_check "first rsync" "o['images.upload'] == $N and o['images.delete'] == 0 and t - $N <= 1"
same_tree "$S" "$I/sync"

log "the same rsync again: nothing to do"
emu_stats_reset
rsync -a "$S/" "$I/sync/" || fail "second rsync -a exited $?"
ops_check "second rsync" "o['images.upload'] == 0 and o['images.delete'] == 0 and o['images.edit'] == 0 and o['images.list_v2'] <= 1 and t <= 1"

log "remount with the same cache dir: sizes and mtimes from the listing"
umount_fs "$M"
mount_fs "$M"
emu_stats_reset
same_tree "$S" "$I/sync"
rsync -a "$S/" "$I/sync/" || fail "rsync after remount exited $?"
ops_check "rsync after remount" "o['images.upload'] == 0 and o['images.delete'] == 0 and o['images.blob'] == 0"

log "remount with an empty cache dir"
umount_fs "$M"
rm -rf "${E2E_T:?}/cache"
mount_fs "$M"
emu_stats_reset
same_tree "$S" "$I/sync"
rsync -a "$S/" "$I/sync/" || fail "rsync after remount (empty cache) exited $?"
ops_check "rsync after remount (empty cache)" "o['images.upload'] == 0 and o['images.delete'] == 0 and o['images.blob'] == 0"

log "du -b of the files equals the source's"
expect_eq "du -cb" "$(cd "$I/sync" && du -cb -- * | tail -n 1 | cut -f1)" \
	"$(cd "$S" && du -cb -- * | tail -n 1 | cut -f1)"

log "rsync -a --delete after removing 10 source files deletes exactly those"
rm -f "$S"/img00[0-9].png
emu_stats_reset
rsync -a --delete "$S/" "$I/sync/" || fail "rsync --delete exited $?"
ops_check "rsync --delete" "o['images.delete'] == 10 and o['images.upload'] == 0"
[[ ! -e $I/sync/img005.png && -e $I/sync/img010.png ]] || fail "wrong files deleted"

log "cp -p: one upload, mtime kept"
make_png "$E2E_T/p.png" 9 9 7
touch -d "2019-05-05 10:00:00" "$E2E_T/p.png"
emu_stats_reset
cp -p "$E2E_T/p.png" "$I/p.png" || fail "cp -p"
ops_check "cp -p" "o['images.upload'] == 1 and t == 1"
expect_eq "cp -p mtime" "$(stat -c %Y "$I/p.png")" "$(stat -c %Y "$E2E_T/p.png")"
mv "$I/p.png" "$I/p2.png" || fail "mv of a stored image"
expect_eq "mtime kept by a rename" "$(stat -c %Y "$I/p2.png")" "$(stat -c %Y "$E2E_T/p.png")"

log "open(O_TRUNC) + futimens + close without writing: one PATCH, bytes and size unchanged"
emu_stats_reset
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.utime(fd, (1000000000, 1000000000))
os.close(fd)' "$I/p2.png" || fail "O_TRUNC + futimens"
ops_check "futimens on an unchanged O_TRUNC open" "o['images.edit'] == 1 and t == 1"
expect_eq "size kept" "$(stat -c %s "$I/p2.png")" "$(stat -c %s "$E2E_T/p.png")"
expect_eq "mtime set" "$(stat -c %Y "$I/p2.png")" 1000000000
cmp "$E2E_T/p.png" "$I/p2.png" || fail "bytes changed"

log "touch -d on a stored image: one PATCH, persists across a remount"
emu_stats_reset
touch -d 2020-01-01 "$I/sync/img100.png" || fail "touch -d"
ops_check "touch -d" "o['images.edit'] == 1 and t == 1"
expect_eq "mtime after touch -d" "$(stat -c %Y "$I/sync/img100.png")" 1577836800
touch "$I/sync" || fail "touch of a directory"

log "setfattr user.metadata after touch -d keeps the mtime; the reserved key is never shown"
setfattr -n user.metadata -v '{"album":"x"}' "$I/sync/img100.png" || fail "setfattr"
expect_eq "user.metadata" "$(getfattr --only-values -n user.metadata "$I/sync/img100.png")" '{"album":"x"}'
expect_eq "mtime after setfattr" "$(stat -c %Y "$I/sync/img100.png")" 1577836800
api sync%2Fimg100.png | grep -q '"imagesfs":"v1 m=1577836800.000000000 s=' || fail "stamp not stored"
getfattr -d "$I/sync/img100.png" 2>/dev/null | grep -q "v1 [ms]=" && fail "reserved key shown by getfattr -d"
setfattr -x user.metadata "$I/sync/img100.png" || fail "removexattr"
api sync%2Fimg100.png | grep -q '"imagesfs":"v1 m=1577836800' || fail "stamp lost by removexattr"

log "tar x keeps mtimes"
(cd "$S" && tar cf "$E2E_T/t.tar" img01[0-4].png) || fail "tar c"
mkdir "$I/tarx"
emu_stats_reset
tar xf "$E2E_T/t.tar" -C "$I/tarx" || fail "tar x"
ops_check "tar x" "o['images.upload'] == 5 and o['images.delete'] == 0 and o['images.edit'] <= 5"
for f in img01{0..4}.png; do
	expect_eq "tar mtime $f" "$(stat -c %Y "$I/tarx/$f")" "$(stat -c %Y "$S/$f")"
done

log "scratch files: local until renamed to a visible name"
emu_stats_reset
cp "$S/img020.png" "$I/.tmp.png" || fail "cp to a scratch file"
touch -d 2018-02-02 "$I/.tmp.png" || fail "touch scratch"
chmod 600 "$I/.tmp.png" || fail "chmod scratch"
setfattr -n user.metadata -v '{"s":1}' "$I/.tmp.png" || fail "setfattr scratch"
cmp "$S/img020.png" "$I/.tmp.png" || fail "scratch bytes"
python3 -c 'import os, sys; sys.exit(".tmp.png" not in os.listdir(sys.argv[1]))' "$I" ||
	fail "scratch file not listed"
cp "$S/img021.png" "$I/.gone.png" || fail "cp scratch"
rm "$I/.gone.png" || fail "rm scratch"
ops_check "scratch files cost nothing" "t == 0"
mv "$I/.tmp.png" "$I/y.png" || fail "mv scratch to a visible name"
ops_check "rename uploads once" "o['images.upload'] == 1 and t == 1"
cmp "$S/img020.png" "$I/y.png" || fail "renamed bytes"
expect_eq "mtime carried" "$(stat -c %Y "$I/y.png")" "$(date -d 2018-02-02 +%s)"
expect_eq "xattr carried" "$(getfattr --only-values -n user.metadata "$I/y.png")" '{"s":1}'
echo "this is text" >"$I/.t.txt" || fail "text scratch"
expect_errno EINVAL "os.rename('$I/.t.txt', '$I/t.png')"
expect_eq "scratch left in place" "$(cat "$I/.t.txt")" "this is text"
[[ -e $I/t.png ]] && fail "a refused rename left the target"
cp "$S/img022.png" "$I/.r.png" || fail "scratch for replace"
emu_stats_reset
mv "$I/.r.png" "$I/y.png" || fail "mv scratch onto an image"
ops_check "replace" "o['images.upload'] == 1 and o['images.delete'] == 1"
cmp "$S/img022.png" "$I/y.png" || fail "replaced bytes"

log "an image whose id begins with '.' in the account is listed and readable"
curl -fsS "${auth[@]}" -F "id=.dotted.png" -F "file=@$S/img030.png" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1" >/dev/null || fail "upload .dotted.png"
umount_fs "$M"
grep -q "dropped scratch file 'images/.t.txt' at unmount" "${FS_LOG[$M]}" || fail "no drop log line"
mount_fs "$M"
cmp "$S/img030.png" "$I/.dotted.png" || fail ".dotted.png not readable"
expect_eq "touch -d survived remount" "$(stat -c %Y "$I/sync/img100.png")" 1577836800
[[ -e $I/.t.txt ]] && fail "scratch file survived the unmount"
umount_fs "$M"

log "images uploaded elsewhere: size 0 until read, then kept across remounts and evictions"
emu_seed 2 other- 3000
want=$(curl -fsS "${auth[@]}" "$EMU_URL/accounts/$ACCOUNT/images/v1/other-000001/blob" | wc -c)
mount_fs "$M" cache_size=1K # smaller than any blob: nothing stays in the cache
expect_eq "size before the first read" "$(stat -c %s "$I/other-000001")" 0
cat "$I/other-000001" >/dev/null || fail "read other-000001"
expect_eq "size after the read" "$(stat -c %s "$I/other-000001")" "$want"
umount_fs "$M"
mount_fs "$M" cache_size=1K
emu_stats_reset
expect_eq "size after remount, blob not cached" "$(stat -c %s "$I/other-000001")" "$want"
expect_eq "other-000000 never read" "$(stat -c %s "$I/other-000000")" 0
ops_check "sizes from the local record" "o['images.blob'] == 0"
umount_fs "$M"

log "rsync -a while the listing goes stale (dir_ttl=1): no request per probed name"
mkdir "$E2E_T/src2" || fail "mkdir src2"
cp -p "$S"/img1[0-7]?.png "$E2E_T/src2/" || fail "src2"
mount_fs "$M" dir_ttl=1
ls "$I" >/dev/null
emu_stats_reset
rsync -a "$E2E_T/src2/" "$I/stale/" || fail "rsync -a (dir_ttl=1) exited $?"
ops_check "rsync with a stale listing" "o['images.upload'] == 80 and o['images.get'] == 0 and o['images.delete'] == 0"
umount_fs "$M"

log "stamp=off: mtimes stay in the mount, nothing is stored"
mount_fs "$M" stamp=off
ls "$I/sync" >/dev/null
emu_stats_reset
touch -d 2010-01-01 "$I/sync/img101.png" || fail "touch -d with stamp=off"
expect_eq "local mtime" "$(stat -c %Y "$I/sync/img101.png")" "$(date -d 2010-01-01 +%s)"
ops_check "stamp=off touch" "t == 0"
umount_fs "$M"
echo PASS

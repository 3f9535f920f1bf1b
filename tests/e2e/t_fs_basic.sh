#!/usr/bin/env bash
# Listing, reading and uploading through a real mount, with API request counts.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
emu_seed 20 seed- 300
M=$E2E_T/mnt
mount_fs "$M"

log "ls: one list call, no get, no blob"
emu_stats_reset
expect_eq "root" "$(ls "$M" | tr '\n' ' ')" "images keys renditions stats variants "
expect_eq "ls count" "$(ls "$M/images" | wc -l)" 20
ls -l "$M/images" >"$E2E_T/ls.out" || fail "ls -l"
expect_eq "ls -l lines" "$(grep -c seed- "$E2E_T/ls.out")" 20
expect_eq "list calls" "$(emu_op images.list_v2)" 1
expect_eq "get calls" "$(emu_op images.get)" 0
expect_eq "blob calls" "$(emu_op images.blob)" 0
stat "$M/images/seed-000003" >/dev/null || fail "stat"
expect_eq "get after stat" "$(emu_op images.get)" 0

log "reading, byte-exact on a cold cache, with every tool"
curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/seed-000001/blob" -o "$E2E_T/ref1" || fail "ref blob"
curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/seed-000002/blob" -o "$E2E_T/ref2" || fail "ref blob"
emu_stats_reset
cmp "$E2E_T/ref1" "$M/images/seed-000001" || fail "cmp seed-000001"
expect_eq "blob calls after first read" "$(emu_op images.blob)" 1
cat "$M/images/seed-000001" >"$E2E_T/cat1" && cmp "$E2E_T/ref1" "$E2E_T/cat1" || fail "cat"
cp "$M/images/seed-000001" "$E2E_T/cp1" && cmp "$E2E_T/ref1" "$E2E_T/cp1" || fail "cp out"
expect_eq "sha256" "$(sha256sum <"$M/images/seed-000001" | cut -d' ' -f1)" \
	"$(sha256sum <"$E2E_T/ref1" | cut -d' ' -f1)"
dd if="$M/images/seed-000001" of="$E2E_T/dd1" bs=7 status=none && cmp "$E2E_T/ref1" "$E2E_T/dd1" ||
	fail "dd"
python3 -c 'import sys; sys.exit(open(sys.argv[1],"rb").read() != open(sys.argv[2],"rb").read())' \
	"$M/images/seed-000002" "$E2E_T/ref2" || fail "python read"
expect_eq "blob calls after many reads" "$(emu_op images.blob)" 2
expect_eq "size after first open" "$(stat -c %s "$M/images/seed-000001")" \
	"$(stat -c %s "$E2E_T/ref1")"
expect_eq "size of a never-opened image" "$(stat -c %s "$M/images/seed-000007")" 0

log "uploading with cp and with cat >, reading back without a download"
make_png "$E2E_T/a.png" 40 30 1
make_jpeg "$E2E_T/b.jpg" 2
make_gif "$E2E_T/c.gif"
emu_stats_reset
cp "$E2E_T/a.png" "$M/images/a.png" || fail "cp a.png"
cat "$E2E_T/b.jpg" >"$M/images/b.jpg" || fail "cat > b.jpg"
cp "$E2E_T/c.gif" "$M/images/" || fail "cp c.gif"
expect_eq "uploads" "$(emu_op images.upload)" 3
cmp "$E2E_T/a.png" "$M/images/a.png" || fail "read back a.png"
cmp "$E2E_T/b.jpg" "$M/images/b.jpg" || fail "read back b.jpg"
cmp "$E2E_T/c.gif" "$M/images/c.gif" || fail "read back c.gif"
expect_eq "blob calls for read-back" "$(emu_op images.blob)" 0
expect_eq "size after upload" "$(stat -c %s "$M/images/a.png")" "$(stat -c %s "$E2E_T/a.png")"
ls "$M/images" | grep -qx a.png || fail "a.png not listed"
curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/a.png" | grep -q '"filename":"a.png"' ||
	fail "a.png not in the API"

log "a 1 MB cp costs no FUSE round trip per write beyond the WRITE itself"
# A buffered (page-cache) FUSE write asks the daemon for security.capability on every
# write(2) (8 GETXATTRs per 1 MB with cp's 128 KiB buffer); a file being written is
# direct_io, which does not. Counted by the daemon, compared with two reads of the counter.
ops_n() {
	python3 -c 'import os, sys
t = os.getxattr(sys.argv[1], "user.imagesfs.ops").decode().split()
print(t[t.index(sys.argv[2]) + 1])' "$M" "$1"
}
make_png "$E2E_T/mb.png" 600 580 3
g0=$(ops_n getxattr) g1=$(ops_n getxattr)
cp "$E2E_T/mb.png" "$M/images/mb.png" || fail "cp mb.png"
g2=$(ops_n getxattr)
expect_eq "getxattr requests during a 1 MB cp" $((g2 - g1)) $((g1 - g0))
cmp "$E2E_T/mb.png" "$M/images/mb.png" || fail "read back mb.png"

log "refusals at open and write"
expect_errno EINVAL "os.open('$M/images/0b8a2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b', os.O_CREAT|os.O_WRONLY, 0o644)"
[[ -e $M/images/0b8a2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b ]] && fail "uuid-named file exists"
expect_errno EINVAL "os.open('$M/images/stats', os.O_CREAT|os.O_WRONLY, 0o644)"
[[ -e $M/images/stats ]] && fail "an image named like an API route exists"
head -c $((10 * 1024 * 1024 + 1)) /dev/urandom >"$E2E_T/big"
expect_errno EFBIG "
fd = os.open('$M/images/big.png', os.O_CREAT|os.O_WRONLY, 0o644)
try:
    os.write(fd, b'\\x89PNG' + b'x' * (10*1024*1024 - 4))
    os.write(fd, b'y')
finally:
    try: os.close(fd)
    except OSError: pass"
cp "$E2E_T/big" "$M/images/big2.png" 2>/dev/null && fail "cp of 10 MB + 1 succeeded"
[[ -e $M/images/big.png || -e $M/images/big2.png ]] && fail "oversized file remains"
echo "not an image" >"$E2E_T/text.png"
emu_stats_reset
cp "$E2E_T/text.png" "$M/images/text.png" 2>"$E2E_T/cp.err" && fail "cp of text succeeded"
grep -q "Invalid argument\|failed to close" "$E2E_T/cp.err" || fail "cp error: $(cat "$E2E_T/cp.err")"
[[ -e $M/images/text.png ]] && fail "text.png remains after the failed upload"
expect_eq "failed upload attempts" "$(emu_op images.upload)" 1
grep -q "cannot upload 'images/text.png'" "${FS_LOG[$M]}" || fail "no log line for the failed upload"

log "touch keeps a local empty file, not uploaded"
emu_stats_reset
touch "$M/images/empty.png" || fail "touch"
expect_eq "touched size" "$(stat -c %s "$M/images/empty.png")" 0
expect_eq "uploads after touch" "$(emu_op images.upload)" 0
cp "$E2E_T/a.png" "$M/images/empty.png" || fail "cp onto the touched file"
cmp "$E2E_T/a.png" "$M/images/empty.png" || fail "touched then written"

log "rm"
emu_stats_reset
rm "$M/images/b.jpg" "$M/images/seed-000005" || fail "rm"
expect_eq "deletes" "$(emu_op images.delete)" 2
[[ -e $M/images/b.jpg || -e $M/images/seed-000005 ]] && fail "removed files still there"
ls "$M/images" | grep -q 'seed-000005' && fail "seed-000005 still listed"
curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/b.jpg" | grep -q 404 || fail "b.jpg still in the API"

log "an image deleted elsewhere: reading it fails with ENOENT and it leaves the listing"
stat "$M/images/seed-000009" >/dev/null
curl -fsS -X DELETE -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/seed-000009" >/dev/null || fail "delete elsewhere"
expect_errno ENOENT "open('$M/images/seed-000009','rb').read()"
grep -q "cannot read 'images/seed-000009'" "${FS_LOG[$M]}" || fail "no log line for the 404"
ls "$M/images" | grep -q seed-000009 && fail "seed-000009 still listed"

umount_fs "$M"
echo PASS

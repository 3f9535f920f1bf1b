#!/usr/bin/env bash
# renditions/<variant>/<image path>: each variant of each image as a read-only file fetched
# from the delivery URL (the emulator renders it with libvips) through the disk cache.
# Checks: a 32x32 fit=cover rendition is a PNG of exactly 32x32 (IHDR); scale-down never
# enlarges; metadata=none drops the EXIF block of a JPEG source (keep keeps it, copyright keeps
# only the Copyright tag); sizes exact
# after the first read; a second read comes from the cache; editing the variant through
# variants/ changes what the rendition reads after dir_ttl; a private image's rendition
# reads fine and the delivery log shows a signed URL; delivery is not an API request; and
# `ls -l renditions/thumbnail/` over 1,000 images makes no delivery request.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
HOST=${EMU_URL%/client/v4}
IMG=$EMU_URL/accounts/$ACCOUNT/images
auth=(-H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN")
jpost() { curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -d "$2" "$IMG/$1" >/dev/null || fail "POST $1"; }
jpost v1/variants '{"id":"thumbnail","options":{"fit":"cover","metadata":"none","width":32,"height":32}}'
jpost v1/variants '{"id":"big","options":{"fit":"scale-down","metadata":"none","width":500,"height":500}}'
jpost v1/variants '{"id":"keepmeta","options":{"fit":"scale-down","metadata":"keep","width":32,"height":32}}'
jpost v1/variants '{"id":"nometa","options":{"fit":"scale-down","metadata":"none","width":32,"height":32}}'
jpost v1/variants '{"id":"copyr","options":{"fit":"scale-down","metadata":"copyright","width":32,"height":32}}'
emu_seed 1000 seed- 100

# a JPEG source with an EXIF block (APP1 "Exif": an Artist and a Copyright tag, each a marker)
"$IMAGESFS_BIN/imagesfs-mkjpeg" 64 48 "$E2E_T/plain.jpg" || fail "mkjpeg"
python3 - "$E2E_T/plain.jpg" "$E2E_T/exif.jpg" <<'PY' || fail "add EXIF"
import struct, sys
d = open(sys.argv[1], 'rb').read()
artist, text = b'imagesfs-artist-marker\0', b'imagesfs-exif-marker\0'
base = 8 + 2 + 12 * 2 + 4
tiff = (b'II*\0' + struct.pack('<I', 8) + struct.pack('<H', 2)
        + struct.pack('<HHII', 0x013b, 2, len(artist), base)
        + struct.pack('<HHII', 0x8298, 2, len(text), base + len(artist))
        + struct.pack('<I', 0) + artist + text)
app1 = b'Exif\0\0' + tiff
open(sys.argv[2], 'wb').write(d[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + d[2:])
PY
grep -q imagesfs-exif-marker "$E2E_T/exif.jpg" || fail "source has no EXIF marker"
make_png "$E2E_T/a.png" 64 48 1
# a private image (UUID id: private images cannot have custom ids)
PRIV=$(curl -fsS "${auth[@]}" -F "file=@$E2E_T/a.png" -F requireSignedURLs=true "$IMG/v1" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["id"])') || fail "upload private"

M=$E2E_T/mnt
mount_fs "$M" "dir_ttl=2,delivery_url=$HOST/cdn"
mkdir -p "$M/images/album" || fail "mkdir album"
cp "$E2E_T/a.png" "$M/images/album/a.png" || fail "cp a.png"
cp "$E2E_T/exif.jpg" "$M/images/photo.jpg" || fail "cp photo.jpg"
R=$M/renditions

png_size() { python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(); assert d[:8]==b"\x89PNG\r\n\x1a\n" and d[12:16]==b"IHDR", "not a PNG"; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$1"; }
# delivery requests, and API requests other than the listings (which dir_ttl refreshes)
dstat() { curl -fsS "$EMU_ADMIN/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); o=d["ops"]; print(d["delivery"]["requests"], d["total"] - sum(v for k, v in o.items() if k.endswith(".list") or k.startswith("images.list")))'; }

log "renditions/ lists one directory per variant, each mirrors images/"
ls "$R" >"$E2E_T/vars" || fail "ls renditions"
for v in big copyr keepmeta nometa public thumbnail; do grep -qx "$v" "$E2E_T/vars" || fail "variant $v missing: $(cat "$E2E_T/vars")"; done
[[ -d $R/thumbnail/album ]] || fail "renditions/thumbnail/album is not a directory"
ls "$R/thumbnail/album" | grep -qx a.png || fail "album/a.png missing under renditions/thumbnail"

log "a 32x32 fit=cover rendition is a PNG of exactly 32x32; sizes exact after the first read"
cp "$R/thumbnail/album/a.png" "$E2E_T/t.png" || fail "read thumbnail rendition"
expect_eq "thumbnail IHDR" "$(png_size "$E2E_T/t.png")" 32x32
expect_eq "size after the first read" "$(stat -c %s "$R/thumbnail/album/a.png")" "$(stat -c %s "$E2E_T/t.png")"
read -r d0 t0 < <(dstat)
cmp -s "$R/thumbnail/album/a.png" "$E2E_T/t.png" || fail "second read differs"
read -r d1 t1 < <(dstat)
expect_eq "a second read comes from the cache (delivery requests)" "$d1" "$d0"

log "scale-down never enlarges"
expect_eq "64x48 through scale-down 500x500" "$(png_size "$R/big/album/a.png")" 64x48

log "metadata=none drops the EXIF block of a JPEG source; keep keeps it"
head -c 2 "$R/nometa/photo.jpg" | od -An -tx1 | grep -q 'ff d8' || fail "nometa rendition is not a JPEG"
grep -q imagesfs-exif-marker "$R/nometa/photo.jpg" && fail "metadata=none kept the EXIF block"
grep -q imagesfs-exif-marker "$R/keepmeta/photo.jpg" || fail "metadata=keep lost the EXIF block"
grep -q imagesfs-artist-marker "$R/keepmeta/photo.jpg" || fail "metadata=keep lost the Artist tag"
grep -q imagesfs-exif-marker "$R/copyr/photo.jpg" || fail "metadata=copyright lost the Copyright tag"
grep -q imagesfs-artist-marker "$R/copyr/photo.jpg" && fail "metadata=copyright kept the Artist tag"

log "a private image's rendition reads fine; the delivery URL was signed"
read -r d0 t0 < <(dstat)
expect_eq "private rendition" "$(png_size "$R/thumbnail/$PRIV")" 32x32
read -r d1 t1 < <(dstat)
expect_eq "one delivery request" "$((d1 - d0))" 1
expect_eq "no API request but listings for a rendition" "$t1" "$t0"
curl -fsS "$EMU_ADMIN/delivery" >"$E2E_T/dlog" || fail "delivery log"
python3 -c '
import json, re, sys
priv = sys.argv[1]
reqs = [r for r in json.load(open(sys.argv[2]))["requests"] if "/" + priv + "/thumbnail" in r["uri"]]
assert reqs, "no delivery request for the private image"
assert all(re.search(r"/thumbnail\?exp=\d+&sig=[0-9a-f]{64}$", r["uri"]) and r["status"] == 200 for r in reqs), reqs
assert not any(r["credentials"] for r in json.load(open(sys.argv[2]))["requests"]), "API credentials sent to delivery"
' "$PRIV" "$E2E_T/dlog" || fail "the private rendition was not fetched with a signed URL, or with credentials"

log "editing the variant through variants/ changes the rendition after dir_ttl"
echo '{"options":{"fit":"cover","metadata":"none","width":16,"height":16}}' >"$M/variants/thumbnail" ||
	fail "edit variants/thumbnail"
ok=
for _ in $(seq 50); do
	[[ $(png_size "$R/thumbnail/album/a.png") == 16x16 ]] && { ok=1; break; }
	sleep 0.2
done
[[ -n $ok ]] || fail "rendition still $(png_size "$R/thumbnail/album/a.png") after the variant edit"

log "a new upload under the same id never serves the old rendition"
make_png "$E2E_T/c.png" 20 10 3
cp "$E2E_T/c.png" "$M/images/album/a.png" || fail "replace album/a.png"
expect_eq "rendition of the new upload" "$(png_size "$R/big/album/a.png")" 20x10

log "ls -l renditions/thumbnail/ over 1,000 images makes no delivery request"
read -r d0 t0 < <(dstat)
n=$(ls -l "$R/thumbnail/" | grep -c '^-')
((n >= 1001)) || fail "ls -l listed $n files, expected >= 1001"
ls -l "$R/big/" >/dev/null || fail "ls -l big"
read -r d1 t1 < <(dstat)
expect_eq "delivery requests of ls -l" "$((d1 - d0))" 0

log "read-only: writes get EROFS"
expect_errno EROFS "open('$R/thumbnail/album/a.png', 'w')"
expect_errno EROFS "os.mkdir('$R/thumbnail/x')"
expect_errno EROFS "os.unlink('$R/thumbnail/album/a.png')"
expect_errno ENOENT "os.stat('$R/nosuchvariant')"
expect_errno ENOENT "os.stat('$R/thumbnail/nosuchimage')"

umount_fs "$M"

# rate_limit=40/300: a burst of 4, then one request per 8.3 s. The mount spends 2 (variants,
# listing); 12 more counted requests would take ~80 s, so 20 s for all 12 can only hold when
# delivery stays outside the budget.
log "delivery is outside the mount's API budget (rate_limit=40/300)"
M2=$E2E_T/mnt2
mount_fs "$M2" "rate_limit=40/300,delivery_url=$HOST/cdn"
ls "$M2/renditions/public" >/dev/null || fail "ls renditions/public"
read -r d0 t0 < <(dstat)
timeout 20 bash -c 'for i in $(seq -w 0 11); do cat "$1/renditions/public/seed-0000$i" >/dev/null || exit 1; done' \
	_ "$M2" || fail "12 renditions under a small API budget: failed or blocked by the rate limiter"
read -r d1 t1 < <(dstat)
expect_eq "delivery requests" "$((d1 - d0))" 12
umount_fs "$M2"
log "PASS"

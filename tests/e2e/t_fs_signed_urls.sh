#!/usr/bin/env bash
# Signed delivery URLs: a private image's user.variants carries URLs signed with the
# account's key (valid for url_ttl), the emulator's delivery serves them (200) and refuses a
# changed sig, an exp in the past and a missing token (403); variants that never require a
# signature get plain URLs; a key deleted through keys/ invalidates its URLs and the next
# getfattr signs with the key the API generated instead. The key is never logged.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
HOST=${EMU_URL%/client/v4}
IMG=$EMU_URL/accounts/$ACCOUNT/images
auth=(-H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN")
jpost() { curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -d "$2" "$IMG/$1" >/dev/null || fail "POST $1"; }
jpost v1/variants '{"id":"thumb","options":{"fit":"cover","metadata":"none","width":32,"height":32}}'
jpost v1/variants '{"id":"open","options":{"fit":"scale-down","metadata":"none","width":20,"height":20},"neverRequireSignedURLs":true}'
make_png "$E2E_T/a.png" 64 48 1
# private images cannot have custom ids: upload through the API, the id is a UUID
ID=$(curl -fsS "${auth[@]}" -F "file=@$E2E_T/a.png" -F requireSignedURLs=true "$IMG/v1" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["id"])') || fail "upload"
make_png "$E2E_T/b.png" 64 48 2
curl -fsS "${auth[@]}" -F "file=@$E2E_T/b.png" -F id=public.png "$IMG/v1" >/dev/null || fail "upload public"

M=$E2E_T/mnt
mount_fs "$M" "url_ttl=600,delivery_url=$HOST/cdn"
F=$M/images/$ID
vars() { getfattr --absolute-names --only-values -n user.variants "$1"; }
code() { curl -s -o "$E2E_T/got" -w '%{http_code}' "$1"; }
png_size() { python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(); assert d[:8]==b"\x89PNG\r\n\x1a\n" and d[12:16]==b"IHDR"; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$1"; }

log "user.variants of a private image: signed, valid for url_ttl; neverRequireSignedURLs plain"
vars "$F" >"$E2E_T/v1" || fail "getfattr user.variants"
U=$(grep '/thumb?' "$E2E_T/v1") || fail "no signed thumb URL: $(cat "$E2E_T/v1")"
[[ $U =~ ^$HOST/cdn/[A-Za-z0-9_-]+/$ID/thumb\?exp=([0-9]+)\&sig=([0-9a-f]{64})$ ]] || fail "signed URL shape: $U"
EXP=${BASH_REMATCH[1]} SIG=${BASH_REMATCH[2]}
now=$(date +%s)
((EXP >= now + 590 && EXP <= now + 610)) || fail "exp $EXP is not now + url_ttl (600)"
grep -q "^$HOST/cdn/.*/$ID/open$" "$E2E_T/v1" || fail "open variant is not plain: $(cat "$E2E_T/v1")"
grep -q "/public?exp=" "$E2E_T/v1" || fail "public variant is not signed"
vars "$M/images/public.png" | grep -q '?' && fail "a public image got signed URLs"

log "the signed URL works; a changed sig, a past exp, no token get 403"
expect_eq "signed URL" "$(code "$U")" 200
expect_eq "rendition size" "$(png_size "$E2E_T/got")" 32x32
last=${SIG: -1}
[[ $last == 0 ]] && other=1 || other=0
expect_eq "one changed character in sig" "$(code "${U%?}$other")" 403
expect_eq "no token" "$(code "${U%%\?*}")" 403
# an exp in the past signed correctly with the key (the key read through keys/)
KEY=$(cat "$M/keys/default") || fail "read keys/default"
PATH_=${U#"$HOST"}
PATH_=${PATH_%%\?*}
PAST=$((now - 10))
PSIG=$(printf '%s' "$PATH_?exp=$PAST" | openssl dgst -sha256 -hmac "$KEY" | awk '{print $2}')
expect_eq "exp in the past" "$(code "$HOST$PATH_?exp=$PAST&sig=$PSIG")" 403
FSIG=$(printf '%s' "$PATH_?exp=$EXP" | openssl dgst -sha256 -hmac "$KEY" | awk '{print $2}')
expect_eq "sig computed independently (openssl) equals the mount's" "$FSIG" "$SIG"
expect_eq "the neverRequireSignedURLs variant unsigned" "$(code "$(grep '/open$' "$E2E_T/v1")")" 200

log "unknown image or variant: 404; delivery counted apart from the API ops"
emu_stats_reset
expect_eq "unknown variant" "$(code "${U%%/thumb\?*}/nosuchvariant")" 404
expect_eq "unknown image" "$(code "${U%%/$ID/*}/0b8a2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/thumb")" 404
expect_eq "no token" "$(code "${U%%\?*}")" 403
expect_eq "signed" "$(code "$U")" 200
curl -fsS "$EMU_ADMIN/stats" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["delivery"] == {"requests": 4, "ok": 1, "denied": 1, "not_found": 2}, d["delivery"]
assert d["total"] == 0, "delivery counted as API requests: %r" % d["ops"]
' || fail "delivery stats"

log "delivery does not count toward the emulator's --rate-limit"
curl -fsS -X POST -d '{"limit":1,"window":300}' "$EMU_ADMIN/ratelimit" >/dev/null || fail "set rate limit"
for _ in 1 2 3 4 5; do expect_eq "signed URL under a rate limit of 1" "$(code "$U")" 200; done
curl -fsS "$EMU_ADMIN/ratelimit" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["used"] == 0 else 1)' ||
	fail "delivery charged the API rate limit: $(curl -fsS "$EMU_ADMIN/ratelimit")"
curl -fsS -X POST -d '{"limit":0,"window":300}' "$EMU_ADMIN/ratelimit" >/dev/null || fail "clear rate limit"

log "deleting the key through keys/ invalidates its URLs; a fresh getfattr works"
rm "$M/keys/default" || fail "rm keys/default"
expect_eq "old URL after the key is gone" "$(code "$U")" 403
vars "$F" >"$E2E_T/v2" || fail "getfattr after key deletion"
U2=$(grep '/thumb?' "$E2E_T/v2") || fail "no signed thumb URL after key deletion"
[[ $U2 != "$U" ]] || fail "URL not re-signed after the key changed"
expect_eq "fresh URL" "$(code "$U2")" 200

KEY2=$(cat "$M/keys/default")
umount_fs "$M" # one cache directory: one mount at a time

log "sign_key= names the key; a missing one fails getfattr with ENOKEY, one log line"
curl -fsS -X PUT "${auth[@]}" "$IMG/v1/keys/other" >/dev/null || fail "PUT key"
OTHER=$(curl -fsS "${auth[@]}" "$IMG/v1/keys" |
	python3 -c 'import json,sys; print([k["value"] for k in json.load(sys.stdin)["result"]["keys"] if k["name"]=="other"][0])')
M2=$E2E_T/mnt2
mount_fs "$M2" "sign_key=other"
U3=$(vars "$M2/images/$ID" | grep '/thumb?') || fail "getfattr with sign_key=other"
P3=${U3#"$HOST"}
S3=$(printf '%s' "${P3%%&sig=*}" | openssl dgst -sha256 -hmac "$OTHER" | awk '{print $2}')
expect_eq "signed with the key named by sign_key" "${U3##*&sig=}" "$S3"
umount_fs "$M2"
M3=$E2E_T/mnt3
mount_fs "$M3" "sign_key=nosuchkey"
expect_errno ENOKEY "os.getxattr('$M3/images/$ID', 'user.variants')"
grep -q "cannot sign the delivery URLs of 'images/$ID'" "${FS_LOG[$M3]}" || fail "no log line for a missing key"
umount_fs "$M3"

log "bad delivery options are refused before mounting, one line each"
mkdir -p "$E2E_T/mnt4"
for o in url_ttl=0 url_ttl=x sign_key= sign_key=a234567890123456789012 delivery_url=ftp://x delivery_url=https://h/?q; do
	CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN timeout 20 "$IMAGESFS_BIN/mount.imagesfs" "$ACCOUNT" "$E2E_T/mnt4" -f \
		-o "api_url=$EMU_URL,cache_dir=$E2E_T/cache4,$o" >"$E2E_T/bad.out" 2>&1 && fail "-o $o was accepted"
	mountpoint -q "$E2E_T/mnt4" && fail "-o $o mounted"
	grep -Eq "mount.imagesfs: |fuse: invalid parameter" "$E2E_T/bad.out" || fail "-o $o: no message ($(cat "$E2E_T/bad.out"))"
done

log "no signing key value in any log"
for f in "$E2E_T"/fs-*.log; do
	grep -qF -e "$KEY" -e "$KEY2" -e "$OTHER" "$f" && fail "a signing key appears in $f"
done
log "PASS"

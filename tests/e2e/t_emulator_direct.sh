#!/usr/bin/env bash
# t_emulator_direct.sh - direct creator uploads in imagesfs-emulator, driven with curl:
# POST images/v2/direct_upload (multipart, JSON, empty body) and the deprecated v1 JSON form,
# every field rule (custom id, expiry bounds, metadata forms, requireSignedURLs, creator), the
# draft (visible to GET with draft:true, hidden from lists, stats and blob), the one-time
# upload URL (no auth, same file checks as an upload, second POST refused), lazy expiry,
# the account limit, the op counters, and drafts across a restart with --data.
# Env: IMAGESFS_BIN (dir with imagesfs-emulator), IMAGESFS_SRC (repo root). Needs curl, python3.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # STEP is read by the library's fail()
set -euo pipefail
# shellcheck source=../emulator/emu_test_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../emulator/emu_test_lib.sh"

ACCT=0123456789abcdef0123456789abcdef
TOKEN=direct-$RANDOM$RANDOM
AUTH="Authorization: Bearer $TOKEN"
IMG=

api() { req "$1" "$IMG/$2" -H "$AUTH" "${@:3}"; }
direct() { api POST v2/direct_upload "$@"; }
# post_file URL [curl args...]: the unauthenticated POST to an upload URL.
post_file() { req POST "$@"; }
when() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
drafts() {
	req GET "$HOSTURL/__emulator/drafts"
	jget "d['drafts']"
}
# new_draft [curl args...]: creates a draft; sets DID and DURL.
new_draft() {
	direct "$@"
	expect_ok
	DID=$(jget "d['result']['id']")
	DURL=$(jget "d['result']['uploadURL']")
}
count_images() {
	api GET v1/stats
	expect_ok
	jget "d['result']['count']['current']"
}

printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRdirect-one' >"$W/a.png"
printf '\xff\xd8\xff\xe0\x00\x10JFIFdirect-jpeg' >"$W/c.jpg"
printf 'hello, not an image' >"$W/x.txt"

IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --data "$W/data"
IMG=$BASE/accounts/$ACCT/images
HASHRE='[A-Za-z0-9_-]{22}'

STEP=auth-and-routing
req POST "$IMG/v2/direct_upload"
expect 400 9106
req POST "$IMG/v2/direct_upload" -H 'Authorization: Bearer wrong'
expect 401 10000
api GET v2/direct_upload
expect 404 7003
api GET v1/direct_upload # a reserved word, not an image id
expect 404 7003
api DELETE v1/direct_upload
expect 404 7003
[[ $(drafts) == 0 ]] || fail "a refused request created a draft"

STEP=create-defaults
t0=$(date +%s)
new_draft
check "set(d['result']) == {'id', 'uploadURL'}" "UUID.fullmatch(d['result']['id'])"
[[ $DURL =~ ^$HOSTURL/upload/($HASHRE)/$DID$ ]] || fail "uploadURL $DURL"
hash=${BASH_REMATCH[1]}
GEN=$DID
GENURL=$DURL
api GET "v1/$GEN"
expect_ok
check "d['result']['draft'] is True" "'filename' not in d['result']" \
	"d['result']['creator'] is None and 'meta' not in d['result']" \
	"d['result']['requireSignedURLs'] is False" \
	"d['result']['variants'] == ['$HOSTURL/cdn/$hash/$GEN/public']" \
	"set(d['result']) == {'id','creator','requireSignedURLs','uploaded','variants','draft'}"
up=$(jget "d['result']['uploaded']")
"$PY" -c "import sys,datetime as D; t=D.datetime.strptime(sys.argv[1],'%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=D.timezone.utc).timestamp(); sys.exit(0 if abs(t-$t0)<60 else 1)" "$up" ||
	fail "draft uploaded time $up is not now"
# an empty multipart form (closing delimiter only) and a JSON {} are "no fields" as well
direct -H 'Content-Type: multipart/form-data; boundary=XB' --data-binary $'--XB--\r\n'
expect_ok
direct -H 'Content-Type: application/json' --data-binary '{}'
expect_ok
# the upload URL names the Host the client used, else the listen address
direct -H 'Host: images.example.test:8443'
expect_ok
check "re.fullmatch(r'http://images\.example\.test:8443/upload/$hash/[0-9a-f-]{36}', d['result']['uploadURL'])"
direct -H 'Host: bad_host'
expect_ok
check "d['result']['uploadURL'].startswith('$HOSTURL/upload/$hash/')"
[[ $(drafts) == 5 ]] || fail "expected 5 drafts, have $(drafts)"

STEP=create-fields
exp=$(when '+1 hour')
new_draft -F 'id=dir/custom%id' -F 'metadata={"k":"v","n":2}' -F creator=alice \
	-F requireSignedURLs=false -F "expiry=$exp"
[[ $DID == 'dir/custom%id' && $DURL == "$HOSTURL/upload/$hash/dir%2Fcustom%25id" ]] ||
	fail "custom id draft: $DID $DURL"
CUSTURL=$DURL
api GET 'v1/dir%2Fcustom%25id'
expect_ok
check "d['result']['draft'] is True and d['result']['id'] == 'dir/custom%id'" \
	"d['result']['meta'] == {'k': 'v', 'n': 2} and d['result']['creator'] == 'alice'"
new_draft -F 'metadata[a]=1' -F 'metadata[b][c]=x' -F requireSignedURLs=true
BRACKET=$DID
api GET "v1/$BRACKET"
check "d['result']['meta'] == {'a': '1', 'b': {'c': 'x'}} and d['result']['requireSignedURLs'] is True"
new_draft -H 'Content-Type: application/json' \
	--data-binary "{\"metadata\":{\"j\":true},\"creator\":\"bob\",\"expiry\":\"$(when '+3 hours')\"}"
api GET "v1/$DID"
check "d['result']['meta'] == {'j': True} and d['result']['creator'] == 'bob'"
# the deprecated v1 form: JSON body, same result shape
api POST v1/direct_upload -H 'Content-Type: application/json' \
	--data-binary "{\"metadata\":{\"v1\":\"yes\"},\"requireSignedURLs\":false,\"expiry\":\"$(when '+10 minutes')\"}"
expect_ok
check "set(d['result']) == {'id', 'uploadURL'}" "UUID.fullmatch(d['result']['id'])" \
	"d['result']['uploadURL'] == '$HOSTURL/upload/$hash/' + d['result']['id']"
V1ID=$(jget "d['result']['id']")
V1URL=$(jget "d['result']['uploadURL']")
api GET "v1/$V1ID"
check "d['result']['draft'] is True and d['result']['meta'] == {'v1': 'yes'}"
api POST v1/direct_upload
expect_ok
# expiry: RFC 3339 with an offset or fractional seconds; bounds now+2min .. now+6h
direct -F "expiry=$(date -d '+3 minutes' +%Y-%m-%dT%H:%M:%S.123+00:00)"
expect_ok
direct -F "expiry=$(TZ=Asia/Kolkata date -d '+5 hours 55 minutes' +%Y-%m-%dT%H:%M:%S%:z)"
expect_ok
nd=$(drafts)

STEP=create-errors
for e in "$(when '+60 seconds')" "$(when '+6 hours 5 minutes')" "$(when '-1 hour')"; do
	direct -F "expiry=$e"
	expect 400 5400
	check "'between 2 minutes and 6 hours' in d['errors'][0]['message']"
done
for e in tomorrow 2030-01-01 '2030-01-01 10:00:00Z' 2030-02-30T10:00:00Z 2030-01-01T25:00:00Z \
	2030-01-01T10:00:00 2030-01-01T10:00:00+2:00 ''; do
	direct -F "expiry=$e"
	expect 400 5400
	check "'RFC 3339' in d['errors'][0]['message']"
done
direct -H 'Content-Type: application/json' --data-binary '{"expiry":12345}'
expect 400 5400
direct -F 'id=0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9'
expect 400 5400
check "'UUID' in d['errors'][0]['message']"
direct -F 'id=/lead'
expect 400 5400
direct -F 'id='
expect 400 5400
direct -F "id=$(head -c 1025 /dev/zero | tr '\0' i)"
expect 400 5400
direct -F 'id=private-custom' -F requireSignedURLs=true
expect 400 5400
direct -H 'Content-Type: application/json' --data-binary '{"id":"private-json","requireSignedURLs":true}'
expect 400 5400
direct -F requireSignedURLs=yes
expect 400 5400
direct -F 'metadata=not json'
expect 400 5400
direct -F 'metadata={"a":1}' -F 'metadata[b]=2'
expect 400 5400
direct -F "creator=$(head -c 1025 /dev/zero | tr '\0' c)"
expect 400 5400
direct -F id=twice -F id=twice
expect 400 5400
direct -F file=@"$W/a.png"
expect 400 5400
check "'uploadURL' in d['errors'][0]['message']"
direct -F url=http://127.0.0.1:1/x.png
expect 400 5400
direct -H 'Content-Type: text/plain' --data-binary 'id=x'
expect 415 5415
direct -H 'Content-Type: multipart/form-data; boundary=XB' --data-binary 'garbage'
expect 400 5400
direct -H 'Content-Type: application/json' --data-binary '[1]'
expect 400 5400
api POST v1/direct_upload -H 'Content-Type: application/json' --data-binary 'not json'
expect 400 5400
# duplicate custom ids: an existing image and an existing draft
api POST v1 -F file=@"$W/c.jpg" -F id=taken/image
expect_ok
direct -F id=taken/image
expect 409 5409
check "d['errors'][0]['message'] == 'Resource already exists. Verify the resource information and try again.'"
direct -F 'id=dir/custom%id'
expect 409 5409
api POST v1 -F file=@"$W/a.png" -F 'id=dir/custom%id' # nor may an upload take a draft's id
expect 409 5409
[[ $(drafts) == "$nd" ]] || fail "refused requests changed the drafts ($nd -> $(drafts))"

STEP=hidden
api GET 'v1?per_page=100'
expect_ok
check "[i['id'] for i in d['result']['images']] == ['taken/image']"
api GET 'v2?per_page=100'
check "[i['id'] for i in d['result']['images']] == ['taken/image']"
api GET 'v2?per_page=100&creator=alice'
check "d['result']['images'] == []"
api GET 'v1?per_page=100&creator=alice'
check "d['result']['images'] == []"
api GET 'v2?per_page=100&meta.k[eq]=v'
check "d['result']['images'] == []"
[[ $(count_images) == 1 ]] || fail "stats count drafts"
req GET "$HOSTURL/__emulator/health"
check "d['images'] == 1"
api GET "v1/$GEN/blob"
expect 404 5404
# a draft can be edited and deleted like an image
api PATCH "v1/$BRACKET" -H 'Content-Type: application/json' --data-binary '{"metadata":{"e":1},"creator":"ed"}'
expect_ok
check "d['result']['draft'] is True and d['result']['meta'] == {'e': 1} and d['result']['creator'] == 'ed'"
api DELETE "v1/$BRACKET"
expect_ok
api GET "v1/$BRACKET"
expect 404 5404
nd=$(drafts)

STEP=upload-file
post_file "$GENURL" -H 'Content-Type: image/png' --data-binary @"$W/a.png"
expect 415 5415
post_file "$GENURL" -F notfile=@"$W/a.png"
expect 400 5400
post_file "$GENURL" -F file=@"$W/a.png" -F file=@"$W/a.png"
expect 400 5400
post_file "$GENURL" -F file=@"$W/x.txt"
expect 415 5455
check "d['errors'][0]['message'] == 'Unsupported image format'"
{ printf '\x89PNG\r\n\x1a\n'; head -c $((10 * 1024 * 1024 - 7)) /dev/zero; } >"$W/big.png"
post_file "$GENURL" -F file=@"$W/big.png"
expect 413 5413
{ printf '\x89PNG\r\n\x1a\n'; head -c $((13 * 1024 * 1024)) /dev/zero; } >"$W/huge.png"
post_file "$GENURL" -F file=@"$W/huge.png"
expect 413 5413
rm -f "$W/big.png" "$W/huge.png"
api GET "v1/$GEN" # failed attempts do not use the URL up
check "d['result']['draft'] is True"
post_file "$GENURL" -F "file=@$W/a.png;filename=pic.png;type=application/octet-stream"
expect_ok
check "is_image(d['result'])" "d['result']['id'] == '$GEN' and d['result']['filename'] == 'pic.png'" \
	"'draft' not in d['result'] and d['result']['uploaded'] > '$up'"
cp "$W/body" "$W/completed"
api GET "v1/$GEN"
expect_ok
"$PY" -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(a["result"] != b["result"])' \
	"$W/completed" "$W/body" || fail "GET after completion differs from the upload reply"
api GET "v1/$GEN/blob"
expect 200
cmp -s "$W/body" "$W/a.png" || fail "completed blob differs from the uploaded file"
[[ $(header Content-Type) == image/png ]] || fail "blob type $(header Content-Type)"
api GET 'v2?per_page=100'
check "[i['id'] for i in d['result']['images']] == ['$GEN', 'taken/image']"
[[ $(count_images) == 2 ]] || fail "stats did not count the completed image"
[[ $(drafts) == $((nd - 1)) ]] || fail "the completed draft is still counted as a draft"
# one-time: a second POST is refused and changes nothing
post_file "$GENURL" -F file=@"$W/c.jpg"
expect 409 5409
check "d['errors'][0]['message'] == 'This upload URL has already been used'"
api GET "v1/$GEN/blob"
cmp -s "$W/body" "$W/a.png" || fail "a second POST replaced the bytes"
# the custom-id URL, used verbatim (%2F and %25 in it)
post_file "$CUSTURL" -F file=@"$W/c.jpg"
expect_ok
check "d['result']['id'] == 'dir/custom%id' and d['result']['meta'] == {'k': 'v', 'n': 2}" \
	"d['result']['creator'] == 'alice' and d['result']['filename'] == 'c.jpg'"
post_file "$V1URL" -F file=@"$W/a.png" -H 'Authorization: Bearer not-checked-here'
expect_ok
check "d['result']['meta'] == {'v1': 'yes'}"
# unknown URLs
post_file "$HOSTURL/upload/$hash/no-such-draft" -F file=@"$W/a.png"
expect 404 5404
post_file "$HOSTURL/upload/AAAAAAAAAAAAAAAAAAAAAA/$V1ID" -F file=@"$W/a.png"
expect 404 5404
post_file "$HOSTURL/upload/$hash/taken%2Fimage" -F file=@"$W/a.png"
expect 409 5409
req GET "$GENURL"
expect 404 5404
post_file "$HOSTURL/upload/$hash" -F file=@"$W/a.png"
expect 404 5404

STEP=one-time-race
new_draft
pids=()
for i in $(seq 8); do
	curl -sS -o /dev/null -w '%{http_code}\n' --max-time 30 -F file=@"$W/a.png" "$DURL" >"$W/race$i.code" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel upload-URL POST failed"; done
codes=$(cat "$W"/race*.code | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
[[ $codes == '200x1 409x7 ' ]] || fail "8 parallel POSTs to one upload URL: $codes"

STEP=expiry
new_draft -F id=exp/custom
EXPURL=$DURL
new_draft
EXP1=$DID
EXP1URL=$DURL
new_draft
EXP2=$DID
before=$(drafts)
req POST "$HOSTURL/__emulator/drafts/expire"
expect 200
check "d['expired'] == $before"
[[ $(drafts) == "$before" ]] || fail "expiry removed drafts eagerly"
post_file "$EXP1URL" -F file=@"$W/a.png"
expect 404 5404
check "d['errors'][0]['message'] == 'This upload URL has expired'"
[[ $(drafts) == $((before - 1)) ]] || fail "the expired draft did not disappear on upload"
post_file "$EXP1URL" -F file=@"$W/a.png"
expect 404 5404
check "d['errors'][0]['message'] == 'Upload URL not found'"
api GET "v1/$EXP2"
expect 404 5404
[[ $(drafts) == $((before - 2)) ]] || fail "the expired draft did not disappear on GET"
api DELETE "v1/$EXP2"
expect 404 5404
# an expired draft's custom id is free again (for a new draft and for an upload)
new_draft -F id=exp/custom
[[ $DURL == "$EXPURL" ]] || fail "re-created draft has another URL: $DURL"
req POST "$HOSTURL/__emulator/drafts/expire"
api POST v1 -F file=@"$W/a.png" -F id=exp/custom
expect_ok
post_file "$EXPURL" -F file=@"$W/c.jpg"
expect 409 5409
[[ -z $(grep -l '"draft":true' "$W"/data/images/*.img 2>/dev/null | xargs -r grep -l '"id":"exp/custom"') ]] ||
	fail "the expired draft's file is still on disk"

STEP=op-stats
req POST "$HOSTURL/__emulator/stats/reset"
new_draft
api POST v1/direct_upload
post_file "$DURL" -F file=@"$W/x.txt"
post_file "$DURL" -F file=@"$W/a.png"
req GET "$HOSTURL/__emulator/stats"
check "d['ops']['images.direct_upload'] == 2 and d['ops']['images.direct_upload_file'] == 2" \
	"d['total'] == 4 and d['ops']['other'] == 0"
req GET "$DURL"
req GET "$HOSTURL/__emulator/stats"
check "d['ops']['other'] == 1 and d['total'] == 5"
# fault rules can target the new ops
req POST "$HOSTURL/__emulator/faults" --data-binary '{"op":"images.direct_upload_file","status":503,"count":1}'
expect 200
new_draft
post_file "$DURL" -F file=@"$W/a.png"
expect 503 5503
post_file "$DURL" -F file=@"$W/a.png"
expect_ok

STEP=persistence
new_draft -F id=persist/pending -F 'metadata={"p":1}' -F creator=carol
api GET 'v1/persist%2Fpending'
# variants[] URLs carry the emulator's own origin, whose port changes with the restart
sed -E 's#http://127\.0\.0\.1:[0-9]+/cdn/#DELIVERY/#g' "$W/body" >"$W/pending.before"
new_draft -F id=persist/done
post_file "$DURL" -F file=@"$W/a.png"
expect_ok
new_draft -F id=persist/stale
stale=$(grep -l '"id":"persist/stale"' "$W"/data/images/*.img)
new_draft -F id=persist/crash
crash=$(grep -l '"id":"persist/crash"' "$W"/data/images/*.img)
cp "$crash" "$W/crash.copy"
post_file "$DURL" -F file=@"$W/c.jpg"
expect_ok
[[ ! -e $crash ]] || fail "the completed draft's file was not removed"
npending=$(drafts)
[[ $(grep -l '"draft":true' "$W"/data/images/*.img | wc -l) == "$npending" ]] ||
	fail "draft files on disk do not match the $npending pending drafts"
emu_stop
# a crash between writing the image and unlinking the draft leaves both files; an expired
# draft file is dropped at load
cp "$W/crash.copy" "$crash"
"$PY" - "$stale" <<'PY'
import json, sys
p = sys.argv[1]
raw = open(p, 'rb').read()
nl = raw.index(b'\n')
h = json.loads(raw[:nl])
h['expires_ms'] = 1000
open(p, 'wb').write(json.dumps(h, separators=(',', ':')).encode() + raw[nl:])
PY
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --data "$W/data"
IMG=$BASE/accounts/$ACCT/images
api GET 'v1/persist%2Fpending'
expect_ok
sed -E 's#http://127\.0\.0\.1:[0-9]+/cdn/#DELIVERY/#g' "$W/body" >"$W/pending.after"
cmp -s "$W/pending.after" "$W/pending.before" || fail "pending draft differs after restart: $(head -c 300 "$W/body")"
api GET 'v1/persist%2Fdone'
check "'draft' not in d['result'] and d['result']['filename'] == 'a.png'"
api GET 'v1/persist%2Fcrash'
check "'draft' not in d['result'] and d['result']['filename'] == 'c.jpg'"
api GET 'v1/persist%2Fcrash/blob'
cmp -s "$W/body" "$W/c.jpg" || fail "crash-recovered blob differs"
[[ ! -e $crash && ! -e $stale ]] || fail "stale draft files survived the load"
api GET 'v1/persist%2Fstale'
expect 404 5404
[[ $(drafts) == $((npending - 1)) ]] || fail "pending drafts after restart: $(drafts), want $((npending - 1))"
post_file "$HOSTURL/upload/$hash/persist%2Fpending" -F file=@"$W/a.png"
expect_ok
check "d['result']['meta'] == {'p': 1} and d['result']['creator'] == 'carol'"
new_draft # upload times stay unique past the drafts' file names
post_file "$DURL" -F file=@"$W/a.png"
expect_ok
[[ -z $(find "$W/data" -name '.tmp-*') ]] || fail "temp files left in the data dir"
emu_stop

STEP=account-limit
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --allowed 1
IMG=$BASE/accounts/$ACCT/images
new_draft
api POST v1 -F file=@"$W/a.png"
expect_ok
post_file "$DURL" -F file=@"$W/c.jpg"
expect 403 5453
direct
expect 403 5453
emu_stop

grep -qE 'Sanitizer|runtime error:' "$W/emu.err" && fail "sanitizer report from the emulator"
echo "t_emulator_direct: all checks passed"

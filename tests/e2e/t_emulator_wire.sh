#!/usr/bin/env bash
# t_emulator_wire.sh - the wire format and every validation/error case of imagesfs-emulator,
# driven with curl: auth, routing, upload (file, url, bracket metadata, custom ids), get, edit,
# delete, blob, lists v1/v2 (paging, sort orders, creator filter), keys, stats, variants,
# admin stats/seed, persistence across a restart, and a parallel-clients check.
# Env: IMAGESFS_BIN (dir with imagesfs-emulator), IMAGESFS_SRC (repo root). Needs curl, python3.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # STEP is read by the library's fail()
set -euo pipefail
# shellcheck source=../emulator/emu_test_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../emulator/emu_test_lib.sh"

ACCT=0123456789abcdef0123456789abcdef
TOKEN=wire-$RANDOM$RANDOM
AUTH="Authorization: Bearer $TOKEN"
IMG=

api() { req "$1" "$IMG/$2" -H "$AUTH" "${@:3}"; }
upload() { api POST v1 "$@"; }
patch() { api PATCH "v1/$1" -H 'Content-Type: application/json' --data-binary "$2"; }

# ---- test images ----
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRpng-one' >"$W/a.png"
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRpng-two' >"$W/b.png"
printf '\xff\xd8\xff\xe0\x00\x10JFIFjpeg' >"$W/c.jpg"
printf 'GIF89a\x01\x00\x01\x00gif' >"$W/d.gif"
printf 'RIFF\x10\x00\x00\x00WEBPVP8 webp' >"$W/e.webp"
printf '\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c -->\n<svg xmlns="http://www.w3.org/2000/svg"/>' >"$W/f.svg"
printf 'hello, not an image' >"$W/x.txt"

IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --data "$W/data" --auth-key "ops@example.com:gk-123"
IMG=$BASE/accounts/$ACCT/images

STEP=auth
req GET "$IMG/v1"
expect 400 9106
check "d['errors'][0]['message'] == 'Missing X-Auth-Key, X-Auth-Email or Authorization headers'"
req GET "$IMG/v1" -H 'X-Auth-Email: ops@example.com'
expect 400 9106
for bad in 'Basic abc' 'Bearer' 'Bearer  two-spaces' 'Bearer a b' 'bearer' 'Token x'; do
	req GET "$IMG/v1" -H "Authorization: $bad"
	expect 400 6003
	check "d['errors'][0]['message'] == 'Invalid request headers'" \
		"d['errors'][0]['error_chain'] == [{'code': 6111, 'message': 'Invalid format for Authorization header'}]"
done
req GET "$IMG/v1" -H 'Authorization: Bearer wrong-token'
expect 401 10000
check "d['errors'][0]['message'] == 'Authentication error'"
req GET "$IMG/v1" -H 'Authorization: Bearer imagesfs-demo-token'
expect 401 10000
req GET "$IMG/v1" -H 'X-Auth-Email: ops@example.com' -H 'X-Auth-Key: wrong'
expect 401 10000
req GET "$IMG/v1" -H 'X-Auth-Email: ops@example.com' -H 'X-Auth-Key: gk-123'
expect_ok
api GET v1
expect_ok
check "d['result'] == {'images': []}"

STEP=routing
req GET "$BASE/accounts/ffffffffffffffffffffffffffffffff/images/v1" -H "$AUTH"
expect 404 7003
check "d['errors'][0]['message'] == 'Could not route to /client/v4/accounts/ffffffffffffffffffffffffffffffff/images/v1, perhaps your object identifier is invalid?'" \
	"d['errors'][1] == {'code': 7000, 'message': 'No route for that URI'}"
api GET v1/some/deep/path
expect 404 7003
api PUT v1
expect 404 7003
api GET v3
expect 404 7003
api DELETE v1/stats # keys/stats/variants are routes, not image ids
expect 404 7003
api PATCH v1/keys/default
expect 404 7003
api GET v1/
expect 404 7003
req GET "$HOSTURL/nothing-here"
expect 404 7003
req GET "$IMG/v1/x" # auth is checked before routing
expect 400 9106

STEP=upload-errors
upload -H 'Content-Type: image/png' --data-binary @"$W/a.png"
expect 415 5415
check "d['errors'][0]['message'] == 'Images must be uploaded as a form, not as raw image data. Please use multipart/form-data format.'"
upload -F id=only-an-id
expect 400 5400
upload -F file=@"$W/a.png" -F url=http://127.0.0.1:1/x.png
expect 400 5400
upload -F file=@"$W/x.txt"
expect 415 5455
check "d['errors'][0]['message'] == 'Unsupported image format'"
{ printf '\x89PNG\r\n\x1a\n'; head -c $((10 * 1024 * 1024 - 7)) /dev/zero; } >"$W/big.png"
upload -F file=@"$W/big.png"
expect 413 5413
check "d['errors'][0]['message'] == 'Maximum image size of 10 MB is reached'"
{ printf '\x89PNG\r\n\x1a\n'; head -c $((13 * 1024 * 1024)) /dev/zero; } >"$W/huge.png"
upload -F file=@"$W/huge.png"
expect 413 5413
rm -f "$W/huge.png" "$W/big.png"
upload -F file=@"$W/a.png" -F 'metadata=not json'
expect 400 5400
upload -F file=@"$W/a.png" -F 'metadata=[1,2]'
expect 400 5400
upload -F file=@"$W/a.png" -F "metadata={\"k\":\"$(head -c 1100 /dev/zero | tr '\0' x)\"}"
expect 400 5400
upload -F file=@"$W/a.png" -F 'metadata={"a":1}' -F 'metadata[b]=2'
expect 400 5400
upload -F file=@"$W/a.png" -F 'id='
expect 400 5400
upload -F file=@"$W/a.png" -F "id=$(head -c 1025 /dev/zero | tr '\0' i)"
expect 400 5400
upload -F file=@"$W/a.png" -F 'id=/lead'
expect 400 5400
upload -F file=@"$W/a.png" -F 'id=trail/'
expect 400 5400
upload -F file=@"$W/a.png" -F 'id=0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9'
expect 400 5400
check "'UUID' in d['errors'][0]['message']"
upload -F file=@"$W/a.png" -F "id=ctl$(printf '\001')char"
expect 400 5400
upload -F file=@"$W/a.png" -F 'id=private-custom' -F requireSignedURLs=true
expect 400 5400
upload -F file=@"$W/a.png" -F requireSignedURLs=maybe
expect 400 5400
upload -F file=@"$W/a.png" -F "creator=$(head -c 1025 /dev/zero | tr '\0' c)"
expect 400 5400
upload -F "file=@$W/a.png;filename=$(head -c 256 /dev/zero | tr '\0' n)"
expect 400 5400
upload -F file=@"$W/a.png" -F file=@"$W/b.png"
expect 400 5400
printf -- '--XB\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc' >"$W/bad.mp"
upload -H 'Content-Type: multipart/form-data; boundary=XB' --data-binary @"$W/bad.mp"
expect 400 5400
printf 'garbage without any boundary' >"$W/bad.mp"
upload -H 'Content-Type: multipart/form-data; boundary=XB' --data-binary @"$W/bad.mp"
expect 400 5400
upload -H 'Content-Type: multipart/form-data' --data-binary @"$W/bad.mp"
expect 400 5400
req GET "$HOSTURL/__emulator/health"
check "d['images'] == 0"

STEP=upload
upload -F file=@"$W/a.png" -F 'id=dir/a b é' -F 'metadata={"k":"v","n":1}' -F creator=alice
expect_ok
check "is_image(d['result'], meta=True)" "d['result']['id'] == 'dir/a b é'" \
	"d['result']['filename'] == 'a.png'" "d['result']['meta'] == {'k': 'v', 'n': 1}" \
	"d['result']['creator'] == 'alice'" "d['result']['requireSignedURLs'] is False"
EMU_HASH=$(jget "d['result']['variants'][0].split('/')[4]")
export EMU_HASH
CUSTOM=dir%2Fa%20b%20%C3%A9
api GET "v1/$CUSTOM"
expect_ok
check "is_image(d['result'], meta=True)" "d['result']['id'] == 'dir/a b é'"
api GET "v1/$CUSTOM/blob" -H 'Accept: image/*'
expect 200
cmp -s "$W/body" "$W/a.png" || fail "blob bytes differ from the upload"
[[ $(header content-type) == image/png ]] || fail "blob content-type $(header content-type)"
[[ $(header content-length) == "$(stat -c %s "$W/a.png")" ]] || fail "blob content-length"
upload -F file=@"$W/b.png" -F 'id=dir/a b é'
expect 409 5409
check "d['errors'][0]['message'] == 'Resource already exists. Verify the resource information and try again.'"
upload -F file=@"$W/b.png" -F requireSignedURLs=true -F creator=alice
expect_ok
check "is_image(d['result'])" "UUID.fullmatch(d['result']['id'])" \
	"d['result']['requireSignedURLs'] is True" "d['result']['filename'] == 'b.png'"
GEN=$(jget "d['result']['id']")
upload -F file=@"$W/a.png" -F 'metadata[a]=1' -F 'metadata[b][c]=x' -F 'metadata[l][]=p' \
	-F 'metadata[l][]=q' -F id=bracket -F creator=bob
expect_ok
check "d['result']['meta'] == {'a': '1', 'b': {'c': 'x'}, 'l': ['p', 'q']}"
prev=
for f in c.jpg d.gif e.webp f.svg; do
	upload -F file=@"$W/$f" -F "id=type-$f"
	expect_ok
	check "is_image(d['result'])" "'meta' not in d['result']" "d['result']['creator'] is None"
	up=$(jget "d['result']['uploaded']")
	[[ -z $prev || $up > $prev ]] || fail "uploaded not strictly increasing: $prev then $up"
	prev=$up
done
for p in "c.jpg image/jpeg" "d.gif image/gif" "e.webp image/webp" "f.svg image/svg+xml"; do
	read -r f ct <<<"$p"
	api GET "v1/type-$f/blob"
	expect 200
	cmp -s "$W/body" "$W/$f" || fail "blob of $f differs"
	[[ $(header content-type) == "$ct" ]] || fail "content-type of $f: $(header content-type)"
done
# a quoted boundary, hand-written body
printf -- '--a b\r\nContent-Disposition: form-data; name="id"\r\n\r\nquoted\r\n--a b\r\nContent-Disposition: form-data; name="file"; filename="q.gif"\r\nContent-Type: image/gif\r\n\r\nGIF87a-bytes\r\n--a b--\r\n' >"$W/q.mp"
upload -H 'Content-Type: multipart/form-data; boundary="a b"' --data-binary @"$W/q.mp"
expect_ok
check "d['result']['id'] == 'quoted'" "d['result']['filename'] == 'q.gif'"

STEP=url-upload
mkdir -p "$W/www"
cp "$W/c.jpg" "$W/www/pic.jpg"
cp "$W/x.txt" "$W/www/note.txt"
# shellcheck source=tests/e2e/origin.sh
source "$(dirname "${BASH_SOURCE[0]}")/origin.sh"
origin_start "$W/www" "$W/http.out"
BG_PIDS+=("$ORIGIN_PID")
[[ -n $ORIGIN_PORT ]] || fail "python http.server did not start"
port=$ORIGIN_PORT
upload -F "url=http://127.0.0.1:$port/pic.jpg" -F id=from-url
expect_ok
check "d['result']['filename'] == 'pic.jpg'"
api GET v1/from-url/blob
cmp -s "$W/body" "$W/c.jpg" || fail "url upload bytes differ"
upload -F "url=http://127.0.0.1:$port/missing.png"
expect 400 5400
check "'404' in d['errors'][0]['message']"
upload -F "url=http://127.0.0.1:$port/note.txt"
expect 415 5455
upload -F 'url=http://127.0.0.1:1/nothing.png'
expect 400 5400
check "'fetch' in d['errors'][0]['message']"

STEP=edit
patch "$CUSTOM" '{"metadata":{"x":[1,2]},"creator":"carol"}'
expect_ok
check "d['result']['meta'] == {'x': [1, 2]}" "d['result']['creator'] == 'carol'"
patch "$CUSTOM" '{"metadata":{}}'
expect_ok
check "is_image(d['result'])" "'meta' not in d['result']" "d['result']['creator'] == 'carol'"
patch "$CUSTOM" '{"creator":null}'
expect_ok
check "d['result']['creator'] is None"
patch "$CUSTOM" '{"requireSignedURLs":true}'
expect 400 5400
patch "$GEN" '{"requireSignedURLs":false}'
expect_ok
check "d['result']['requireSignedURLs'] is False"
patch "$GEN" '{"metadata":"str"}'
expect 400 5400
patch "$GEN" '{"requireSignedURLs":"yes"}'
expect 400 5400
patch "$GEN" '{"creator":5}'
expect 400 5400
patch "$GEN" "{\"metadata\":{\"k\":\"$(head -c 1100 /dev/zero | tr '\0' x)\"}}"
expect 400 5400
patch "$GEN" '{not json'
expect 400 5400
patch "$GEN" '[1]'
expect 400 5400
patch nope '{}'
expect 404 5404

STEP=get-delete
api GET v1/nope
expect 404 5404
check "d['errors'][0]['message'] == 'Image not found'"
api GET v1/nope/blob
expect 404 5404
upload -F file=@"$W/a.png" -F id=doomed
expect_ok
api DELETE v1/doomed
expect_ok
check "d['result'] == {}"
api DELETE v1/doomed
expect 404 5404
api GET v1/doomed/blob
expect 404 5404

STEP=lists
api GET "v1?per_page=9"
expect 400 5400
api GET "v1?per_page=10001"
expect 400 5400
api GET "v1?page=0"
expect 400 5400
api GET "v2?sort_order=sideways"
expect 400 5400
api GET "v2?continuation_token=bogus"
expect 400 5400
api GET "v1?creator=alice"
expect_ok
check "sorted(i['id'] for i in d['result']['images']) == sorted(['$GEN'])"
api GET "v2?creator=bob"
expect_ok
check "[i['id'] for i in d['result']['images']] == ['bracket']" "d['result']['continuation_token'] is None"
api GET "v1?creator="
expect_ok
check "len(d['result']['images']) == 7" "all(i['creator'] is None for i in d['result']['images'])"
api GET "v2"
expect_ok
check "len(d['result']['images']) == 9" "all(is_image(i, meta='meta' in i) for i in d['result']['images'])"

STEP=stats
api GET v1/stats
expect_ok
check "d['result'] == {'count': {'allowed': 100000, 'current': 9}}"

STEP=keys
api GET v1/keys
expect_ok
check "[k['name'] for k in d['result']['keys']] == ['default']" "len(d['result']['keys'][0]['value']) >= 32"
old_default=$(jget "d['result']['keys'][0]['value']")
api PUT v1/keys/second
expect_ok
check "[k['name'] for k in d['result']['keys']] == ['default', 'second']" \
	"d['result']['keys'][0]['value'] == '$old_default'" "d['result']['keys'][1]['value'] != '$old_default'"
api PUT v1/keys/bad-name
expect 400 5400
api PUT "v1/keys/$(head -c 21 /dev/zero | tr '\0' k)"
expect 400 5400
api DELETE v1/keys/nokey
expect 404 5404
api DELETE v1/keys/default
expect_ok
check "[k['name'] for k in d['result']['keys']] == ['second']"
api DELETE v1/keys/second
expect_ok
check "[k['name'] for k in d['result']['keys']] == ['default']" "d['result']['keys'][0]['value'] != '$old_default'"

STEP=variants
api GET v1/variants
expect_ok
check "d['result'] == {'variants': {'public': {'id': 'public', 'options': {'fit': 'scale-down', 'metadata': 'none', 'width': 1366, 'height': 768}, 'neverRequireSignedURLs': False}}}"
vpost() { api POST v1/variants -H 'Content-Type: application/json' --data-binary "$1"; }
vpost '{"id":"thumb","options":{"fit":"cover","metadata":"keep","width":100,"height":80}}'
expect_ok
check "d['result'] == {'variant': {'id': 'thumb', 'options': {'fit': 'cover', 'metadata': 'keep', 'width': 100, 'height': 80}, 'neverRequireSignedURLs': False}}"
vpost '{"id":"hero","options":{"fit":"contain","metadata":"copyright","width":1200,"height":600},"neverRequireSignedURLs":true}'
expect_ok
vpost '{"id":"thumb","options":{"fit":"cover","metadata":"keep","width":1,"height":1}}'
expect 409 5409
for bad in '{"id":"v1","options":{"fit":"stretch","width":1,"height":1}}' \
	'{"id":"v1","options":{"metadata":"all","width":1,"height":1}}' \
	'{"id":"v1","options":{"width":0,"height":1}}' \
	'{"id":"v1","options":{"width":12001,"height":1}}' \
	'{"id":"v1","options":{"width":"10","height":1}}' \
	'{"id":"v1","options":{"bogus":1}}' \
	'{"id":"bad-id","options":{"width":1,"height":1}}' \
	"{\"id\":\"$(head -c 100 /dev/zero | tr '\0' v)\",\"options\":{\"width\":1}}" \
	'{"id":"v1"}' '{"options":{"width":1}}' \
	'{"id":"v1","options":{"width":1},"neverRequireSignedURLs":"yes"}' 'nope'; do
	vpost "$bad"
	expect 400 5400
done
api GET v1/variants/thumb
expect_ok
check "d['result']['variant']['id'] == 'thumb'"
api GET v1/variants/nope
expect 404 5401
check "d['errors'][0]['message'] == 'Variant not found'"
api PATCH v1/variants/thumb -H 'Content-Type: application/json' --data-binary '{"options":{"width":50},"neverRequireSignedURLs":true}'
expect_ok
check "d['result']['variant'] == {'id': 'thumb', 'options': {'fit': 'cover', 'metadata': 'keep', 'width': 50, 'height': 80}, 'neverRequireSignedURLs': True}"
api PATCH v1/variants/thumb -H 'Content-Type: application/json' --data-binary '{"options":{"fit":"nope"}}'
expect 400 5400
api PATCH v1/variants/nope -H 'Content-Type: application/json' --data-binary '{"options":{"width":5}}'
expect 404 5401
api GET "v1/$CUSTOM"
check "is_image(d['result'], variants=('hero', 'public', 'thumb'))"
api DELETE v1/variants/public
expect 400 5400
api DELETE v1/variants/hero
expect_ok
check "d['result'] == {}"
api DELETE v1/variants/hero
expect 404 5401
api GET v1/variants
check "sorted(d['result']['variants']) == ['public', 'thumb']"

STEP=admin-stats
req POST "$HOSTURL/__emulator/stats/reset"
expect 200
api GET "v1/$CUSTOM"
api GET v1/nope
req GET "$IMG/v1/nope"
api GET v1/keys
api GET v1/no/such/route/here
req GET "$HOSTURL/__emulator/stats"
expect 200
check "set(d['ops']) == {'images.list_v1','images.list_v2','images.upload','images.get','images.edit','images.delete','images.blob','keys.list','keys.put','keys.delete','stats.get','variants.list','variants.get','variants.create','variants.edit','variants.delete','images.direct_upload','images.direct_upload_file','images.batch_token','other'}" \
	"d['ops']['images.get'] == 3 and d['ops']['keys.list'] == 1 and d['ops']['other'] == 1" \
	"d['total'] == 5 and sum(d['ops'].values()) == 5"

STEP=persistence
for p in "v1/$CUSTOM" "v1/$GEN" v1/bracket v1/keys v1/variants v1/stats "v2?per_page=100" "v2?sort_order=asc&per_page=10"; do
	api GET "$p"
	expect_ok
	# variants[] URLs carry the emulator's own origin, whose port changes with the restart
	sed -E 's#http://127\.0\.0\.1:[0-9]+/cdn/#DELIVERY/#g' "$W/body" >"$W/before.$(echo "$p" | md5sum | cut -c1-8)"
done
api GET "v1/$CUSTOM/blob"
cp "$W/body" "$W/before.blob"
[[ -z $(find "$W/data" -name '.tmp-*') ]] || fail "temp files left in the data dir"
[[ $(stat -c %a "$W/data/keys.json") == 600 ]] || fail "keys.json is not mode 600"
emu_stop
IMAGESFS_EMULATOR_TOKEN=$TOKEN "$EMU" --listen 127.0.0.1:0 --data "$W/data" --account abcdef >"$W/other.out" 2>&1 &&
	fail "started on a data dir of another account"
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --data "$W/data"
IMG=$BASE/accounts/$ACCT/images
for p in "v1/$CUSTOM" "v1/$GEN" v1/bracket v1/keys v1/variants v1/stats "v2?per_page=100" "v2?sort_order=asc&per_page=10"; do
	api GET "$p"
	expect_ok
	sed -E 's#http://127\.0\.0\.1:[0-9]+/cdn/#DELIVERY/#g' "$W/body" >"$W/after"
	cmp -s "$W/after" "$W/before.$(echo "$p" | md5sum | cut -c1-8)" ||
		fail "GET $p differs after restart: $(head -c 300 "$W/body")"
done
api GET "v1/$CUSTOM/blob"
cmp -s "$W/body" "$W/before.blob" || fail "blob differs after restart"
upload -F file=@"$W/a.png"
expect_ok
up=$(jget "d['result']['uploaded']")
[[ $up > $prev ]] || fail "upload time after restart not after earlier uploads"
api DELETE v1/bracket
expect_ok
[[ $(grep -l '"id":"bracket"' "$W"/data/images/*.img 2>/dev/null | wc -l) == 0 ]] ||
	fail "deleted image still on disk"

STEP=paging
emu_stop
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --allowed 29
IMG=$BASE/accounts/$ACCT/images
req POST "$HOSTURL/__emulator/seed" --data-binary '{"count":25,"prefix":"pg-"}'
expect 200
check "d == {'created': 25, 'first': 'pg-000000', 'last': 'pg-000024'}"
api GET v1/pg-000007/blob
expect 200
[[ $(header content-type) == image/png ]] || fail "seeded blob is not image/png"
"$PY" -c 'import sys,zlib,struct
d=open(sys.argv[1],"rb").read(); assert d[:8]==b"\x89PNG\r\n\x1a\n"; i=8
while i<len(d):
    n,=struct.unpack(">I",d[i:i+4]); t=d[i+4:i+8]
    assert struct.unpack(">I",d[i+8+n:i+12+n])[0]==zlib.crc32(d[i+4:i+8+n]), t
    if t==b"IDAT": zlib.decompress(d[i+8:i+8+n])
    i+=12+n
assert t==b"IEND"' "$W/body" || fail "seeded PNG is not valid"
for order in desc asc; do
	tok=
	: >"$W/ids"
	for pg in 1 2 3; do
		api GET "v2?per_page=10&sort_order=$order${tok:+&continuation_token=$tok}"
		expect_ok
		n=$((pg == 3 ? 5 : 10))
		check "len(d['result']['images']) == $n"
		jget "'\n'.join(i['id'] for i in d['result']['images'])" >>"$W/ids"
		tok=$(jget "d['result']['continuation_token'] or ''")
		if ((pg < 3)); then
			[[ -n $tok && ${#tok} -le 32 ]] || fail "page $pg ($order): bad continuation_token '$tok'"
		else
			[[ -z $tok ]] || fail "last page ($order) has a continuation_token"
		fi
	done
	if [[ $order == asc ]]; then want=$(seq -f 'pg-%06g' 0 24); else want=$(seq -f 'pg-%06g' 24 -1 0); fi
	[[ $(cat "$W/ids") == "$want" ]] || fail "v2 $order order wrong: $(tr '\n' ' ' <"$W/ids")"
done
api GET "v1?per_page=10&page=3"
check "[i['id'] for i in d['result']['images']] == ['pg-%06d' % n for n in range(4, -1, -1)]"
api GET "v1?per_page=10&page=4"
check "d['result']['images'] == []"
req POST "$HOSTURL/__emulator/seed" --data-binary '{"count":1,"prefix":"pg-","start":3}'
expect 409

STEP=meta-filters
upload -F file=@"$W/a.png" -F id=m1 -F 'metadata={"n":1,"s":"x","b":true,"o":{"p":"deep"}}'
expect_ok
upload -F file=@"$W/a.png" -F id=m2 -F 'metadata={"n":5,"s":"y","b":false,"o":{"p":"other"}}'
expect_ok
upload -F file=@"$W/a.png" -F id=m3 -F 'metadata={"n":"5","s":"x"}'
expect_ok
mf() { # QUERY EXPECTED-IDS (asc order)
	api GET "v2?sort_order=asc&$1"
	expect_ok
	check "[i['id'] for i in d['result']['images']] == $2"
}
mf 'meta.s%5Beq%5D=x' "['m1', 'm3']"
mf 'meta.n[eq]=5' "['m2', 'm3']"
mf 'meta.n[eq:number]=5' "['m2']"
mf 'meta.n[eq:string]=5' "['m3']"
mf 'meta.b[eq:boolean]=true' "['m1']"
mf 'meta.n[gt]=1' "['m2']"
mf 'meta.n[gte:number]=1' "['m1', 'm2']"
mf 'meta.n[lt]=5' "['m1']"
mf 'meta.n[lte]=5' "['m1', 'm2']"
mf 'meta.s[in]=y%7Cz' "['m2']"
mf 'meta.n[in:number]=1%7C7' "['m1']"
mf 'meta.o.p[eq]=deep' "['m1']"
mf 'meta.s[eq]=x&meta.n[eq:number]=1' "['m1']"
mf 'meta.s[eq]=x&creator=' "['m1', 'm3']"
mf 'meta.missing[eq]=x' "[]"
for bad in 'meta.s[not-eq]=x' 'meta.n[gt]=abc' 'meta.b[eq:boolean]=yes' 'meta.s=x' \
	'meta.a.b.c.d.e.f[eq]=1' 'meta.s[in]=1|2|3|4|5|6|7|8|9|10|11' \
	'meta.a[eq]=1&meta.b[eq]=1&meta.c[eq]=1&meta.d[eq]=1&meta.e[eq]=1&meta.f[eq]=1'; do
	api GET "v2?${bad//|/%7C}"
	expect 400 5400
done
api GET 'v2?meta.s[not-eq]=x'
check "d['errors'][0]['message'] == \"Unsupported metadata filter operator: 'not-eq'\""
api GET 'v2?meta.a[eq]=1&meta.b[eq]=1&meta.c[eq]=1&meta.d[eq]=1&meta.e[eq]=1&meta.f[eq]=1'
check "d['errors'][0]['message'] == 'Too many metadata filters: 6 provided, maximum 5 allowed'"

STEP=service-limit
upload -F file=@"$W/a.png"
expect_ok
upload -F file=@"$W/a.png"
expect 403 5453
check "d['errors'][0]['message'] == 'The given account has reached a service limit'"
api GET v1/stats
check "d['result'] == {'count': {'allowed': 29, 'current': 29}}"

STEP=variant-limit
for i in $(seq 1 99); do
	((i == 1)) || echo next
	printf 'header = "%s"\nheader = "Content-Type: application/json"\n' "$AUTH"
	printf 'url = "%s"\ndata = "{\\"id\\":\\"v%d\\",\\"options\\":{\\"width\\":%d}}"\n' "$IMG/v1/variants" "$i" "$i"
	printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'
done >"$W/variants.cfg"
curl -sS -K "$W/variants.cfg" --max-time 60 >"$W/codes" || fail "variant creation loop failed"
[[ $(sort -u "$W/codes") == 200 && $(wc -l <"$W/codes") == 99 ]] ||
	fail "creating 99 variants: $(sort "$W/codes" | uniq -c)"
api POST v1/variants -H 'Content-Type: application/json' --data-binary '{"id":"onetoomany","options":{"width":1}}'
expect 403 5453
api GET v1/pg-000000
check "len(d['result']['variants']) == 100"

STEP=concurrency
req POST "$HOSTURL/__emulator/stats/reset"
pids=()
for i in $(seq 8); do
	for _ in $(seq 50); do printf 'url = "%s"\noutput = "/dev/null"\n' "$IMG/v1/pg-0000$((i + 10))"; done >"$W/par$i.cfg"
	curl -sS -K "$W/par$i.cfg" -H "$AUTH" -w '%{http_code}\n' --max-time 60 >"$W/par$i.codes" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel curl loop failed"; done
cat "$W"/par*.codes >"$W/allcodes"
[[ $(wc -l <"$W/allcodes") == 400 && $(sort -u "$W/allcodes") == 200 ]] ||
	fail "parallel GETs: $(sort "$W/allcodes" | uniq -c | tr '\n' ' ')"
req GET "$HOSTURL/__emulator/stats"
check "d['ops']['images.get'] == 400 and d['total'] == 400"

emu_stop
echo "t_emulator_wire: all checks passed"

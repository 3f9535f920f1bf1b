#!/usr/bin/env bash
# t_emulator_batch.sh - the Images batch API in imagesfs-emulator, driven with curl: batch
# tokens (GET .../images/v1/batch_token, charged to --rate-limit, --batch-token-ttl), the
# batch routes at the server root (same bodies and errors as /client/v4, batch-token auth
# only, not charged to --rate-limit, --batch-rate per token with 429 + Retry-After), the
# route names the real API owns under /images/v1/, the admin expiry hook, and the stats
# (batch_ops, batch_total, batch_refused, sent_429 / sent_429_batch).
# Env: IMAGESFS_BIN (dir with imagesfs-emulator), IMAGESFS_SRC (repo root). Needs curl, python3.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # STEP is read by the library's fail()
set -euo pipefail
# shellcheck source=../emulator/emu_test_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../emulator/emu_test_lib.sh"

ACCT=0123456789abcdef0123456789abcdef
TOKEN=batch-$RANDOM$RANDOM
AUTH="Authorization: Bearer $TOKEN"
IMG=

api() { req "$1" "$IMG/$2" -H "$AUTH" "${@:3}"; }
# b METHOD PATH TOKEN [curl args...]: a request on the batch host (the server root).
b() { req "$1" "$HOSTURL$2" -H "Authorization: Bearer $3" "${@:4}"; }
new_token() {
	api GET v1/batch_token
	expect_ok
	jget "d['result']['token']"
}
stats() { req GET "$HOSTURL/__emulator/stats"; }

printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRbatch-one' >"$W/a.png"
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRbatch-two' >"$W/b.png"

# --rate-limit 6/300: the token requests use the global budget, batch requests do not.
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --rate-limit 6/300 --batch-rate 5 --batch-token-ttl 8
IMG=$BASE/accounts/$ACCT/images

STEP=token
api GET v1/batch_token
expect_ok
check "set(d['result']) == {'token', 'expiresAt'}" "len(d['result']['token']) >= 20" \
	"re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', d['result']['expiresAt'])"
T1=$(jget "d['result']['token']")
exp=$(jget "d['result']['expiresAt']")
"$PY" -c "import sys,time,datetime as D; t=D.datetime.strptime(sys.argv[1],'%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=D.timezone.utc).timestamp(); sys.exit(0 if 0 < t-time.time() <= 8.5 else 1)" "$exp" ||
	fail "expiresAt $exp is not now + --batch-token-ttl"
req GET "$IMG/v1/batch_token" -H 'Authorization: Bearer wrong'
expect 401 10000
api POST v1/batch_token
expect 404 7003

STEP=batch-routes
b POST /images/v1 "$T1" -F id=one -F file=@"$W/a.png"
expect_ok
check "is_image(d['result'])" "d['result']['id'] == 'one'"
b GET /images/v1/one "$T1"
expect_ok
check "d['result']['id'] == 'one' and d['result']['filename'] == 'a.png'"
b PATCH /images/v1/one "$T1" -H 'Content-Type: application/json' -d '{"metadata":{"k":"v"}}'
expect_ok
check "d['result']['meta'] == {'k': 'v'}"
b GET /images/v2 "$T1"
expect_ok
check "[i['id'] for i in d['result']['images']] == ['one']"
T2=$(new_token)
b POST /images/v2/direct_upload "$T2"
expect_ok
check "set(d['result']) == {'id', 'uploadURL'}"
b DELETE /images/v1/one "$T2"
expect_ok
b GET /images/v1/one "$T2"
expect 404 5404
b POST /images/v1 "$T2" -F file=@"$W/b.png" -F id=bad/
expect 400 5400

STEP=batch-auth
b GET /images/v2 "$TOKEN" # an API token is not a batch token
expect 401 10000
b GET /images/v2 "not-a-token"
expect 401 10000
req GET "$HOSTURL/images/v2"
expect 401 10000

STEP=batch-unknown-routes
for p in /images/v1/keys /images/v1/stats /images/v1/variants /images/v1/x/blob /images/v1 \
	/images/v1/direct_upload /images/v1/batch_token /images/v3 /images/v2/x /foo; do
	b GET "$p" "$T2"
	expect 404 7003
done

STEP=batch-rate
# --batch-rate 5: a fresh token gets 5 requests in its first second, then 429 + Retry-After
T4=$(new_token)
urls=()
for _ in $(seq 10); do urls+=(-o /dev/null "$HOSTURL/images/v2"); done
curl -gsS -D "$W/hdrs" -w '%{http_code}\n' -H "Authorization: Bearer $T4" "${urls[@]}" >"$W/codes"
codes=$(head -n 6 "$W/codes" | tr '\n' ' ')
[[ $codes == "200 200 200 200 200 429 " ]] || fail "first six batch codes: $codes"
grep -qi '^retry-after: 1' "$W/hdrs" || fail "batch 429 without Retry-After: 1"
n429=$(grep -c 429 "$W/codes" || true)

STEP=global-limit
# 5 of the 6 global requests are used (4 token requests and the 404); batch ones did not count
api GET v1/stats
expect_ok
api GET v1/stats
expect 429 971
api GET v1/batch_token
expect 429 971
b GET /images/v2 "$T2" # the batch host is not limited by the global budget
expect_ok

STEP=expiry
"$PY" -c "import sys,time,datetime as D; t=D.datetime.strptime(sys.argv[1],'%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=D.timezone.utc).timestamp(); time.sleep(max(0, t-time.time()+0.2))" "$exp"
b GET /images/v2 "$T1"
expect 401 10000
check "'expired' in d['errors'][0]['message']"

STEP=stats
stats
expect 200
check "d['ops']['images.batch_token'] == 5" "d['ops']['images.get'] == 0" \
	"d['ops']['images.list_v2'] == 0 and d['ops']['images.upload'] == 0" \
	"d['batch_ops']['batch.images.upload'] == 2" "d['batch_ops']['batch.images.get'] == 2" \
	"d['batch_ops']['batch.images.edit'] == 1" "d['batch_ops']['batch.images.delete'] == 1" \
	"d['batch_ops']['batch.images.list_v2'] == 16" \
	"d['batch_ops']['batch.images.direct_upload'] == 1" \
	"d['batch_ops']['batch.other'] == 9" \
	"d['batch_total'] == sum(d['batch_ops'].values())" \
	"d['total'] == sum(d['ops'].values())" \
	"d['sent_429'] == 2 and d['sent_429_batch'] == $n429" "d['batch_refused'] == 4" \
	"1 <= d['batch_tokens_live'] <= 2"
req POST "$HOSTURL/__emulator/stats/reset"
expect 200
stats
check "d['batch_total'] == 0 and d['sent_429'] == 0 and d['sent_429_batch'] == 0" \
	"d['batch_refused'] == 0"
emu_stop

STEP=refuse-and-expire-hook
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --refuse-batch-tokens
IMG=$BASE/accounts/$ACCT/images
api GET v1/batch_token
expect 403 9109
emu_stop
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start
IMG=$BASE/accounts/$ACCT/images

STEP=reserved-names
for n in batch_token config keys stats variants direct_upload; do
	api PATCH "v1/$n" -H 'Content-Type: application/json' -d '{}'
	expect 404 7003
	api DELETE "v1/$n"
	expect 404 7003
done

api GET v1/config # config has no GET route here: never an image lookup (5404)
expect 404 7003

STEP=expire-hook
T3=$(new_token)
b GET /images/v2 "$T3"
expect_ok
req POST "$HOSTURL/__emulator/batch_tokens/expire"
expect 200
check "d['expired'] == 1"
b GET /images/v2 "$T3"
expect 401 10000

STEP=fault-429-counted
# injected 429s are counted too, each on its own host
T5=$(new_token)
req POST "$HOSTURL/__emulator/stats/reset"
req POST "$HOSTURL/__emulator/faults" -d '{"op":"images.get","status":429,"retry_after":1,"count":1}'
expect 200
req POST "$HOSTURL/__emulator/faults" -d '{"op":"images.list_v2","status":429,"retry_after":1,"count":2}'
expect 200
api GET v1/nope
expect 429 971
b GET /images/v2 "$T5"
expect 429 971
b GET /images/v2 "$T5"
expect 429 971
stats
check "d['sent_429'] == 1 and d['sent_429_batch'] == 2"
emu_stop
echo "PASS t_emulator_batch"

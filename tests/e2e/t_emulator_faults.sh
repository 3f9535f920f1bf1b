#!/usr/bin/env bash
# t_emulator_faults.sh - fault injection, rate limiting and latency of imagesfs-emulator:
# every fault mode (status 5xx/429, after-the-op errors, close, truncate, stall), ratio rules
# with a seed, rule validation, --fault and --rate-limit flags, the admin rate limit window
# and that --latency-ms / stalls do not serialize parallel requests.
# Env: IMAGESFS_BIN (dir with imagesfs-emulator), IMAGESFS_SRC (repo root). Needs curl, python3.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # STEP is read by the library's fail()
set -euo pipefail
# shellcheck source=../emulator/emu_test_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../emulator/emu_test_lib.sh"

ACCT=0123456789abcdef0123456789abcdef
TOKEN=faults-$RANDOM$RANDOM
AUTH="Authorization: Bearer $TOKEN"
IMG=

api() { req "$1" "$IMG/$2" -H "$AUTH" "${@:3}"; }
fault() {
	req POST "$HOSTURL/__emulator/faults" --data-binary "$1"
	expect 200
}
clear_faults() {
	req DELETE "$HOSTURL/__emulator/faults"
	expect 200
}
# raw_curl ARGS...: runs curl, sets RC (exit code) and TIME (seconds) without failing.
raw_curl() {
	local t0 t1
	t0=$(date +%s%N)
	RC=0
	curl -sS -o "$W/body" -D "$W/hdr" --max-time 20 -H "$AUTH" "$@" 2>"$W/curl.err" || RC=$?
	t1=$(date +%s%N)
	TIME=$(((t1 - t0) / 1000000))
}
ms_now() { echo $(($(date +%s%N) / 1000000)); }

printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRfault' >"$W/a.png"

IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start
IMG=$BASE/accounts/$ACCT/images
req POST "$HOSTURL/__emulator/seed" --data-binary '{"count":3,"prefix":"f-"}'
expect 200

STEP=rule-validation
for bad in '{"op":"nope"}' '{"mode":"explode"}' '{"status":302}' '{"count":0}' '{"ratio":1.5}' \
	'{"stall_ms":-1}' '{"after":"yes"}' 'not json' '[{"status":503},{"op":"bad"}]'; do
	req POST "$HOSTURL/__emulator/faults" --data-binary "$bad"
	expect 400
	check "isinstance(d['error'], str) and d['error']"
done
req GET "$HOSTURL/__emulator/faults"
expect 200
check "d['rules'] == []" "d['rate_limit'] == {'limit': 0, 'window': 0, 'used': 0}"

STEP=status-5xx
fault '{"op":"images.get","status":503,"count":2,"retry_after":7}'
req GET "$HOSTURL/__emulator/faults"
check "d['rules'][0]['op'] == 'images.get' and d['rules'][0]['mode'] == 'status' and d['rules'][0]['count'] == 2"
api GET v1/f-000000
expect 503 5503
check "d['errors'][0]['message'] == 'Server Unavailable'"
[[ $(header retry-after) == 7 ]] || fail "503 without Retry-After: 7"
api GET v1/keys # another op is not affected
expect_ok
api GET v1/f-000000
expect 503 5503
api GET v1/f-000000
expect_ok
req GET "$HOSTURL/__emulator/faults"
check "d['rules'] == []"
fault '{"op":"images.blob","status":500,"count":1}'
api GET v1/f-000000/blob
expect 500 5500
fault '{"op":"images.delete","status":404,"count":1}'
api DELETE v1/f-000001
expect 404 5404
api GET v1/f-000001 # the delete did not happen
expect_ok

STEP=status-429
fault '{"status":429,"count":1,"retry_after":3}'
api GET v1/stats
expect 429 971
check "d['errors'][0]['message'] == 'Please wait and consider throttling your request speed'"
[[ $(header retry-after) == 3 ]] || fail "429 without Retry-After: 3"
[[ -n $(header x-ratelimit-limit) && $(header x-ratelimit-remaining) == 0 ]] ||
	fail "429 without x-ratelimit headers"
header x-ratelimit-reset | grep -Eq '^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT$' ||
	fail "x-ratelimit-reset is not an RFC 1123 date: $(header x-ratelimit-reset)"
api GET v1/stats
expect_ok

STEP=after
fault '{"op":"images.upload","status":500,"count":1,"after":true}'
api POST v1 -F file=@"$W/a.png" -F id=lost-success
expect 500 5500
api GET v1/lost-success
expect_ok
api POST v1 -F file=@"$W/a.png" -F id=lost-success
expect 409 5409

STEP=close
fault '{"op":"images.upload","mode":"close","count":1}'
raw_curl -X POST -F file=@"$W/a.png" -F id=never-stored "$IMG/v1"
((RC == 52)) || fail "close: expected curl exit 52 (empty reply), got $RC: $(cat "$W/curl.err")"
api GET v1/never-stored
expect 404 5404
fault '{"op":"images.upload","mode":"close","count":1,"after":true}'
raw_curl -X POST -F file=@"$W/a.png" -F id=lost-response "$IMG/v1"
((RC == 52)) || fail "close after: expected curl exit 52, got $RC: $(cat "$W/curl.err")"
api GET v1/lost-response
expect_ok
api GET v1/stats
expect_ok

STEP=truncate
fault '{"op":"images.get","mode":"truncate","count":1}'
raw_curl "$IMG/v1/f-000002"
((RC == 18)) || fail "truncate: expected curl exit 18 (partial transfer), got $RC: $(cat "$W/curl.err")"
full=$(grep -i '^content-length:' "$W/hdr" | tr -dc 0-9)
got=$(stat -c %s "$W/body")
((got > 0 && got < full)) || fail "truncate: got $got of $full bytes"
api GET v1/f-000002
expect_ok

STEP=stall
fault '{"op":"images.get","mode":"stall","stall_ms":700,"count":8}'
t0=$(ms_now)
pids=()
for i in $(seq 8); do
	curl -sS -o "$W/stall$i" -w '%{http_code}\n' --max-time 20 -H "$AUTH" "$IMG/v1/f-000000" >"$W/stall$i.code" &
	pids+=($!)
done
sleep 0.1
raw_curl "$IMG/v1/keys" # not stalled, and not stuck behind the stalled ones
((RC == 0 && TIME < 500)) || fail "keys.list during stalls took $TIME ms (rc $RC)"
for p in "${pids[@]}"; do wait "$p" || fail "a stalled request failed"; done
el=$(($(ms_now) - t0))
[[ $(cat "$W"/stall*.code | sort -u) == 200 ]] || fail "stalled requests: $(cat "$W"/stall*.code)"
((el >= 650 && el < 1400)) || fail "8 parallel stalled requests took $el ms (want ~700, not serialized)"

STEP=ratio
fault '{"op":"images.get","status":503,"ratio":0.5,"seed":42}'
for _ in $(seq 40); do echo "url = \"$IMG/v1/f-000000\""; echo 'output = "/dev/null"'; done >"$W/ratio.cfg"
curl -sS -K "$W/ratio.cfg" -H "$AUTH" -w '%{http_code}\n' --max-time 60 >"$W/ratio.codes"
n503=$(grep -c '^503$' "$W/ratio.codes" || true)
n200=$(grep -c '^200$' "$W/ratio.codes" || true)
((n503 + n200 == 40 && n503 >= 8 && n200 >= 8)) || fail "ratio 0.5: $n200 x 200, $n503 x 503"
req GET "$HOSTURL/__emulator/faults"
check "d['rules'][0]['hits'] == $n503"
clear_faults
curl -sS -K "$W/ratio.cfg" -H "$AUTH" -w '%{http_code}\n' --max-time 60 >"$W/ratio.codes"
[[ $(sort -u "$W/ratio.codes") == 200 ]] || fail "requests fail after clearing the faults"

STEP=ratelimit
req POST "$HOSTURL/__emulator/ratelimit" --data-binary '{"limit":5,"window":2}'
expect 200
check "d['limit'] == 5 and d['window'] == 2"
for i in 4 3 2 1 0; do
	api GET v1/stats
	expect_ok
	[[ $(header x-ratelimit-limit) == 5 && $(header x-ratelimit-remaining) == "$i" ]] ||
		fail "remaining $(header x-ratelimit-remaining), want $i"
done
api GET v1/stats
expect 429 971
ra=$(header retry-after)
[[ $ra == 1 || $ra == 2 ]] || fail "Retry-After '$ra' not within the 2 s window"
req GET "$HOSTURL/__emulator/stats" # admin is not limited
expect 200
sleep "$ra"
sleep 0.2
api GET v1/stats
expect_ok
req POST "$HOSTURL/__emulator/ratelimit" --data-binary '{"limit":0}'
expect 200
for _ in $(seq 8); do
	api GET v1/stats
	expect_ok
done
emu_stop

STEP=cli-flags
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --rate-limit 3/60 --fault '{"op":"stats.get","status":503,"count":1}'
IMG=$BASE/accounts/$ACCT/images
api GET v1/stats
expect 503 5503
api GET v1/stats
expect_ok
api GET v1/keys
expect_ok
api GET v1/keys
expect 429 971
ra=$(header retry-after)
((ra > 50 && ra <= 60)) || fail "Retry-After $ra for a 60 s window"
emu_stop
"$EMU" --listen 127.0.0.1:0 --fault '{"op":"bogus"}' >"$W/bad.out" 2>&1 && fail "accepted a bad --fault"
"$EMU" --listen 127.0.0.1:0 --rate-limit 5 >"$W/bad.out" 2>&1 && fail "accepted --rate-limit 5"

STEP=latency
IMAGESFS_EMULATOR_TOKEN=$TOKEN emu_start --latency-ms 300
IMG=$BASE/accounts/$ACCT/images
raw_curl "$IMG/v1/stats"
((RC == 0 && TIME >= 290)) || fail "--latency-ms 300: one request took $TIME ms"
t0=$(ms_now)
pids=()
for i in $(seq 16); do
	curl -sS -o /dev/null -w '%{http_code}\n' --max-time 20 -H "$AUTH" "$IMG/v1/stats" >"$W/lat$i.code" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a delayed request failed"; done
el=$(($(ms_now) - t0))
[[ $(cat "$W"/lat*.code | sort -u) == 200 ]] || fail "delayed requests: $(cat "$W"/lat*.code)"
((el < 1100)) || fail "16 parallel requests with 300 ms latency took $el ms (serialized?)"
t0=$(ms_now)
req GET "$HOSTURL/__emulator/health"
(($(ms_now) - t0 < 250)) || fail "admin endpoints are delayed too"
emu_stop

echo "t_emulator_faults: all checks passed"

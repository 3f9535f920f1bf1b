#!/usr/bin/env bash
# emu_test_lib.sh - helpers shared by the t_emulator_*.sh tests (sourced, not run).
# Provides: emu_start/emu_stop (an imagesfs-emulator on a free port), req/api (curl into
# $W/body, status in $ST, headers in $W/hdr), expect/expect_ok/check (assertions that fail
# loudly with the response body). Needs: curl, python3. Env: IMAGESFS_BIN, IMAGESFS_SRC.
# shellcheck disable=SC2034  # variables used by the sourcing tests

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${IMAGESFS_SRC:-$(cd "$here/../.." && pwd)}
bin=${IMAGESFS_BIN:-$src/build/bin}
EMU=$bin/imagesfs-emulator
STEP=setup
W=$(mktemp -d "${TMPDIR:-/tmp}/imagesfs-emutest.XXXXXX")
declare -a BG_PIDS=()
EMU_PID=
BASE=
HOSTURL=

fail() {
	echo "FAIL [$STEP]: $*" >&2
	if [[ -f $W/emu.err ]]; then
		echo "--- emulator stderr (last 15 lines):" >&2
		tail -n 15 "$W/emu.err" >&2
	fi
	exit 1
}

emu_cleanup() {
	local p
	for p in "${BG_PIDS[@]}" $EMU_PID; do
		if kill -0 "$p" 2>/dev/null; then
			kill "$p" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$p" 2>/dev/null || true
		fi
	done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap emu_cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $EMU ]] || fail "no emulator at $EMU (build target imagesfs-emulator; set IMAGESFS_BIN)"
command -v python3 >/dev/null || fail "python3 is required"
# the real interpreter (a pyenv shim costs ~100 ms per call)
PY=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 does not run"
command -v curl >/dev/null || fail "curl is required"

# JSON checker: chk.py BODYFILE EXPR... evaluates each EXPR with d = parsed body.
cat >"$W/chk.py" <<'PY'
import json, os, re, sys
raw = open(sys.argv[1], 'rb').read()
try:
    d = json.loads(raw)
except Exception:
    d = None
HASH = os.environ.get('EMU_HASH', '')
IMAGE_KEYS = {'id', 'filename', 'creator', 'requireSignedURLs', 'uploaded', 'variants'}
def is_image(o, meta=False, variants=('public',)):
    keys = IMAGE_KEYS | ({'meta'} if meta else set())
    assert set(o) == keys, 'image keys %s != %s' % (sorted(o), sorted(keys))
    assert isinstance(o['id'], str) and isinstance(o['filename'], str)
    assert o['creator'] is None or isinstance(o['creator'], str)
    assert isinstance(o['requireSignedURLs'], bool)
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', o['uploaded']), o['uploaded']
    # delivery base: the emulator's own origin + /cdn (DELIVERY_BASE), hash the next segment
    dbase = os.environ.get('DELIVERY_BASE', '')
    assert o['variants'][0].startswith(dbase + '/'), 'variant %s not under %s' % (o['variants'][0], dbase)
    vhash = o['variants'][0][len(dbase) + 1:].split('/')[0]
    want = ['%s/%s/%s/%s' % (dbase, HASH or vhash, o['id'], v) for v in variants]
    assert o['variants'] == want, 'variants %s != %s' % (o['variants'], want)
    assert re.fullmatch(r'[A-Za-z0-9_-]{22}', vhash)
    if meta:
        assert isinstance(o['meta'], dict)
    return True
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}')
for e in sys.argv[2:]:
    try:
        ok = eval(e)
        why = ''
    except Exception as ex:
        ok, why = False, ' (%s: %s)' % (type(ex).__name__, ex)
    if not ok:
        sys.stderr.write('check failed: %s%s\n  body: %s\n' % (e, why, raw[:700]))
        sys.exit(1)
PY

check() { "$PY" "$W/chk.py" "$W/body" "$@" || fail "check failed (HTTP $ST)"; }
# jget EXPR: prints a value computed from the last body.
jget() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$W/body" "$1"; }

# emu_start [args...]: starts the emulator on a free port; sets EMU_PID, BASE, HOSTURL.
emu_start() {
	: >"$W/emu.out"
	"$EMU" --listen 127.0.0.1:0 "$@" >"$W/emu.out" 2>"$W/emu.err" &
	EMU_PID=$!
	BASE=
	for _ in $(seq 200); do
		BASE=$(head -n 1 "$W/emu.out" 2>/dev/null || true)
		[[ $BASE == http://127.0.0.1:*/client/v4 ]] && break
		BASE=
		kill -0 "$EMU_PID" 2>/dev/null || break
		sleep 0.05
	done
	[[ -n $BASE ]] || fail "emulator did not print its base URL (args: $*)"
	HOSTURL=${BASE%/client/v4}
	export DELIVERY_BASE=$HOSTURL/cdn
}

# emu_stop: SIGTERM, expects a clean exit 0 within 10 s (ASan leak reports make it non-zero).
emu_stop() {
	local rc=0
	kill -TERM "$EMU_PID"
	for _ in $(seq 100); do kill -0 "$EMU_PID" 2>/dev/null || break; sleep 0.1; done
	wait "$EMU_PID" || rc=$?
	EMU_PID=
	((rc == 0)) || fail "emulator exited with status $rc on SIGTERM"
}

# req METHOD URL [curl args...]: body -> $W/body, headers -> $W/hdr, status -> $ST.
req() {
	local m=$1 u=$2
	shift 2
	ST=$(curl -gsS -X "$m" -o "$W/body" -D "$W/hdr" -w '%{http_code}' --max-time 30 "$@" "$u") ||
		fail "curl $m $u failed"
}

# expect STATUS [CODE]: HTTP status and, with CODE, a failure envelope carrying that code.
expect() {
	[[ $ST == "$1" ]] || fail "expected HTTP $1, got $ST: $(head -c 600 "$W/body")"
	if [[ -n ${2:-} ]]; then
		check "d['success'] is False and d['result'] is None and d['messages'] == []" \
			"d['errors'][0]['code'] == $2" "isinstance(d['errors'][0]['message'], str)"
		grep -qi '^content-type: application/json' "$W/hdr" || fail "error without JSON content type"
	fi
}

expect_ok() {
	expect 200
	check "d['success'] is True and d['errors'] == [] and d['messages'] == []" "'result' in d"
	grep -qi '^content-type: application/json' "$W/hdr" || fail "no JSON content type"
}

header() { grep -i "^$1:" "$W/hdr" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }

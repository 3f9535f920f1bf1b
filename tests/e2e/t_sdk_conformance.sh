#!/usr/bin/env bash
# t_sdk_conformance.sh - runs Cloudflare's official TypeScript SDK (npm `cloudflare`, pinned in
# tests/sdk/package.json) unchanged against imagesfs-emulator: tests/sdk/sdk_test.mjs calls every
# images endpoint and asserts the results. Needs node >= 18 and npm (scripts/deps installs them);
# installs tests/sdk/node_modules with `npm ci` when missing or stale.
# Env: IMAGESFS_BIN (dir with imagesfs-emulator), IMAGESFS_SRC (repo root), both set by ctest.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${IMAGESFS_SRC:-$(cd "$here/../.." && pwd)}
bin=${IMAGESFS_BIN:-$src/build/bin}
sdk=$src/tests/sdk
emu=$bin/imagesfs-emulator

fail() { echo "t_sdk_conformance: $*" >&2; exit 1; }

[[ -x $emu ]] || fail "no emulator at $emu (build the imagesfs-emulator target; set IMAGESFS_BIN)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	fail "node and npm are required for the SDK conformance test; run scripts/deps (installs nodejs npm)"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
((node_major >= 18)) || fail "node >= 18 required, found $(node --version 2>/dev/null)"

# Install the pinned SDK unless node_modules already holds exactly that version. A lock keeps
# concurrent runs (ctest -j, two build dirs) from running npm ci over each other.
want=$(node -p 'require(process.argv[1]).dependencies.cloudflare' "$sdk/package.json") ||
	fail "cannot read $sdk/package.json"
have() { node -p 'require(process.argv[1]).version' "$sdk/node_modules/cloudflare/package.json" 2>/dev/null; }
if [[ $(have) != "$want" ]]; then
	(
		flock -w 300 9 || fail "timed out waiting for the npm lock"
		if [[ $(have) != "$want" ]]; then
			echo "t_sdk_conformance: npm ci in $sdk (cloudflare@$want)"
			cd "$sdk" && timeout 300 npm ci --no-audit --no-fund --loglevel=error ||
				fail "npm ci failed in $sdk (is the npm registry reachable?)"
		fi
	) 9>"${TMPDIR:-/tmp}/imagesfs-sdk-npm.lock" || exit 1
	[[ $(have) == "$want" ]] || fail "cloudflare@$want not installed in $sdk/node_modules"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/imagesfs-sdk.XXXXXX") || fail "mktemp failed"
emu_pid=
cleanup() {
	if [[ -n $emu_pid ]] && kill -0 "$emu_pid" 2>/dev/null; then
		kill "$emu_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$emu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$emu_pid" 2>/dev/null
		wait "$emu_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
account=$(rand_hex 16)
token=sdk-$(rand_hex 16)
auth_email=sdk-test@example.com
auth_key=$(rand_hex 20)

# Secrets travel in the environment only, never in argv or logs.
IMAGESFS_EMULATOR_TOKEN=$token IMAGESFS_EMULATOR_AUTH_KEY="$auth_email:$auth_key" \
	"$emu" --listen 127.0.0.1:0 --data "$tmp/data" --account "$account" \
	>"$tmp/emu.out" 2>"$tmp/emu.err" &
emu_pid=$!

base=
for _ in $(seq 200); do
	base=$(head -n 1 "$tmp/emu.out" 2>/dev/null)
	[[ $base == http://127.0.0.1:*/client/v4 ]] && break
	base=
	kill -0 "$emu_pid" 2>/dev/null || break
	sleep 0.1
done
if [[ -z $base ]]; then
	echo "--- emulator stderr:" >&2; tail -n 20 "$tmp/emu.err" >&2
	fail "emulator did not print its base URL within 20 s"
fi
echo "t_sdk_conformance: emulator at $base (pid $emu_pid), SDK cloudflare@$want, node $(node --version)"

CLOUDFLARE_BASE_URL=$base CLOUDFLARE_API_TOKEN=$token CLOUDFLARE_ACCOUNT_ID=$account \
	CLOUDFLARE_EMAIL=$auth_email CLOUDFLARE_API_KEY=$auth_key IMAGES_DELIVERY_PATH=/cdn \
	timeout 120 node "$sdk/sdk_test.mjs"
rc=$?
if ((rc == 124)); then
	echo "t_sdk_conformance: sdk_test.mjs timed out after 120 s" >&2
fi
if ! kill -0 "$emu_pid" 2>/dev/null; then
	echo "t_sdk_conformance: the emulator died during the test" >&2
	((rc != 0)) || rc=1
else
	# Stop it ourselves so sanitizer reports (leaks at exit) land in emu.err before we look.
	kill "$emu_pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$emu_pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$emu_pid" 2>/dev/null; then
		echo "t_sdk_conformance: the emulator did not exit within 10 s of SIGTERM" >&2
		((rc != 0)) || rc=1
	else
		wait "$emu_pid"
		emu_rc=$?
		emu_pid=
		if ((emu_rc != 0)); then
			echo "t_sdk_conformance: the emulator exited with status $emu_rc after SIGTERM" >&2
			((rc != 0)) || rc=1
		fi
	fi
fi
if grep -qE 'Sanitizer|runtime error:' "$tmp/emu.err"; then
	echo "t_sdk_conformance: sanitizer report from the emulator" >&2
	((rc != 0)) || rc=1
fi
if ((rc != 0)); then
	echo "--- emulator stderr (last 30 lines):" >&2; tail -n 30 "$tmp/emu.err" >&2
fi
exit "$rc"

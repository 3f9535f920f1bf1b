# shellcheck shell=bash disable=SC2034 # ORIGIN_* are read by the sourcing test
# tests/e2e/origin.sh - a loopback HTTP origin for upload-by-URL tests (sourced).
# origin_start DIR LOG: serves DIR with python3 http.server on a free 127.0.0.1 port and
# sets ORIGIN_PID and ORIGIN_PORT; returns 1 when it does not start. The caller kills
# ORIGIN_PID (its cleanup trap).
origin_start() {
	(cd "$1" && exec python3 -u -m http.server 0 --bind 127.0.0.1) >"$2" 2>&1 &
	ORIGIN_PID=$!
	ORIGIN_PORT=
	local _
	for _ in $(seq 100); do
		ORIGIN_PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$2" | head -n 1)
		[[ -n $ORIGIN_PORT ]] && return 0
		sleep 0.05
	done
	return 1
}

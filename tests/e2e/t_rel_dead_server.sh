#!/usr/bin/env bash
# A dead server (the emulator stopped with SIGSTOP: connections open, nothing answers) makes
# every operation that needs it fail with an error within a bounded time, never hang; what
# needs no server (cached images, the table) keeps working meanwhile; after SIGCONT the same
# mount recovers without a remount, and what it shows matches the server.
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

# The bound per operation: the client's timeout (one stalled attempt ends at the low-speed
# abort, and retrying stops at the same budget) plus slack; an operation must not chain two
# stalled calls. With -o timeout=SECONDS (when the daemon has it) the test uses 8 s, else
# the default of 30 s.
if "$IMAGESFS_BIN/mount.imagesfs" --help 2>/dev/null | grep -q 'timeout=SECONDS'; then
	TIMEOUT_S=8 TIMEOUT_OPT=",timeout=8"
else
	TIMEOUT_S=30 TIMEOUT_OPT=""
fi
# 2 x timeout + 3 s: on a loaded 2-core CI machine one stalled call plus scheduling noise
# has been seen at 1.8 x; a hang or a chain of three stalls still fails.
BOUND_MS=$((TIMEOUT_S * 2000 + 3000))
RECOVER_MS=15000
emu_start
emu_seed 4 s- 300
M=$E2E_T/mnt
mount_fs "$M" "dir_ttl=2$TIMEOUT_OPT"
cat "$M/images/s-000000" >"$E2E_T/cached" || fail "first read"
make_png "$E2E_T/new.png" 20 20 5

# timed NAME CMD...: runs CMD in the background with a hard cap; records "rc ms" in NAME.rc.
pids=()
timed() {
	local name=$1
	shift
	(
		t0=$(ms_now)
		rc=0
		timeout 100 "$@" >"$E2E_T/$name.out" 2>"$E2E_T/$name.err" || rc=$?
		echo "$rc $(($(ms_now) - t0))" >"$E2E_T/$name.rc"
	) &
	pids+=($!)
}

log "server stopped (client timeout $TIMEOUT_S s, bound per operation $BOUND_MS ms)"
kill -STOP "$EMU_PID"
sleep 2.2 # the listing (dir_ttl=2) is now stale
timed read_uncached cat "$M/images/s-000001"
timed upload cp "$E2E_T/new.png" "$M/images/new.png"
timed stats cat "$M/stats"
timed keys ls "$M/keys"
timed ls_images ls "$M/images"
sleep 1
log "meanwhile: cached image, attributes and the mount itself answer at once"
t0=$(ms_now)
timeout 10 cmp "$E2E_T/cached" "$M/images/s-000000" || fail "cached image unreadable while the server is down"
timeout 10 stat "$M/images/s-000000" >/dev/null || fail "stat while the server is down"
timeout 10 ls "$M" >/dev/null || fail "ls of the root while the server is down"
ms=$(($(ms_now) - t0))
((ms < 5000)) || fail "local operations took $ms ms while the server is down"

wait "${pids[@]}"
for name in read_uncached upload stats keys ls_images; do
	read -r rc ms <"$E2E_T/$name.rc"
	log "$name: exit $rc after $ms ms: $(head -c 200 "$E2E_T/$name.err")"
	((rc != 124)) || fail "$name hung (killed after 100 s)"
	((ms <= BOUND_MS)) || fail "$name took $ms ms (bound $BOUND_MS)"
done
for name in read_uncached upload stats; do
	read -r rc ms <"$E2E_T/$name.rc"
	((rc != 0)) || fail "$name succeeded with the server stopped"
done
grep -q "Connection timed out\|Input/output error\|Resource temporarily unavailable" \
	"$E2E_T/read_uncached.err" || fail "read error: $(cat "$E2E_T/read_uncached.err")"
[[ -e $M/images/new.png ]] && fail "a failed upload is shown in the mount"
kill -0 "${FS_PID[$M]}" || fail "daemon died"

log "server back: the same mount recovers (each operation within $((RECOVER_MS / 1000)) s)"
kill -CONT "$EMU_PID"
t0=$(ms_now)
# eventually WHAT CMD...: CMD must succeed within RECOVER_MS of the server's return (the
# mount may answer recent failures from memory for a moment); retried every 0.5 s.
eventually() {
	local what=$1
	shift
	until timeout 30 "$@" 2>"$E2E_T/ev.err"; do
		(($(ms_now) - t0 < RECOVER_MS)) ||
			fail "$what did not recover within $RECOVER_MS ms: $(cat "$E2E_T/ev.err")"
		sleep 0.5
	done
}
eventually "read" cp "$M/images/s-000001" "$E2E_T/r1"
api_blob s-000001 "$E2E_T/want" || fail "blob"
cmp -s "$E2E_T/want" "$E2E_T/r1" || fail "bytes after recovery differ"
eventually "stats" cat "$M/stats" >/dev/null
sleep 2.2 # dir_ttl: the next lookups ask the server again
# The stopped server may still have processed the upload it had queued: either way the
# mount must show what the server holds, byte-exact.
if api_has_id new.png; then
	log "(the server stored the upload queued while it was stopped)"
	eventually "queued upload shown" cmp "$E2E_T/new.png" "$M/images/new.png"
else
	eventually "upload" cp "$E2E_T/new.png" "$M/images/new.png"
fi
make_png "$E2E_T/new2.png" 20 20 6
eventually "second upload" cp "$E2E_T/new2.png" "$M/images/new2.png"
api_blob new2.png "$E2E_T/got" || fail "new2 not stored"
cmp -s "$E2E_T/new2.png" "$E2E_T/got" || fail "new2 stored with other bytes"
expect_eq "images listed" "$(find "$M/images" -type f | wc -l)" 6
log "recovered in $(($(ms_now) - t0)) ms"
expect_eq "temp files in the cache" "$(cache_tmp_count)" 0
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

#!/usr/bin/env bash
# The client-side rate limiter keeps a mount under the API's request budget instead of
# running into 429s. The emulator enforces the real API's rate (1200 requests per 300 s =
# 4/s) scaled to a 5 s window (20 per 5 s); the mount runs with the matching
# -o rate_limit=20/5 (or, for a daemon without the N/SECS form, rate_limit=3 per second). ls -l of a 30,000-image account and 60 downloads from 4
# processes (more than three windows' worth of requests) all succeed, byte-exact, and no
# reply in the whole run is a 429 (the -d trace of every response is checked).
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

LIMIT=20 WINDOW=5 READS=60
if "$IMAGESFS_BIN/mount.imagesfs" --help 2>/dev/null | grep -q 'rate_limit=N/SECS'; then
	RATE=$LIMIT/$WINDOW
else
	RATE=3
fi
emu_start --allowed 100000
emu_seed 30000 s- 90
emu_seed "$READS" r- 400
for ((i = 0; i < READS; i++)); do # the expected bytes, fetched before the limit is on
	printf -v f 'r-%06d' "$i"
	api_blob "$f" "$E2E_T/want.$f" || fail "fetching $f"
done
curl -fsS -X POST -d "{\"limit\":$LIMIT,\"window\":$WINDOW}" "$EMU_ADMIN/ratelimit" >/dev/null ||
	fail "cannot set the rate limit"
emu_stats_reset
M=$E2E_T/mnt
# -d: libcurl's trace of every response header goes to the log (secrets redacted).
mount_fs "$M" "rate_limit=$RATE,-d"
start=$(ms_now)

log "rate_limit=$RATE; ls -l of a 30,060-image account"
n=$(ls -l "$M/images" | grep -c ' [sr]-') || true
expect_eq "entries" "$n" $((30000 + READS))
ls "$M/keys" "$M/variants" >/dev/null || fail "ls keys variants"
cat "$M/stats" >/dev/null || fail "cat stats"

log "$READS downloads from 4 processes"
pids=()
for w in 0 1 2 3; do
	(
		for ((i = w; i < READS; i += 4)); do
			printf -v f 'r-%06d' "$i"
			timeout 80 cmp -s "$E2E_T/want.$f" "$M/images/$f" || echo "$f" >>"$E2E_T/bad"
		done
	) &
	pids+=($!)
done
wait "${pids[@]}"
ms=$(($(ms_now) - start))
[[ -s $E2E_T/bad ]] && fail "reads failed or differ: $(tr '\n' ' ' <"$E2E_T/bad")"
total=$(emu_total)
log "$total API requests in $ms ms ($((total * 1000 / ms)) per s; budget $LIMIT per $WINDOW s)"
n429=$(grep -c '^imagesfs-api: < HTTP/[0-9.]* 429' "${FS_LOG[$M]}") || true
expect_eq "429 replies seen by the mount" "$n429" 0
grep -q '^imagesfs-api: < HTTP/[0-9.]* 200' "${FS_LOG[$M]}" ||
	fail "the -d trace shows no responses at all: the 429 check is blind"
((total >= READS)) || fail "only $total requests: the reads did not reach the server"
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

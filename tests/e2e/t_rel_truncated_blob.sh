#!/usr/bin/env bash
# A download cut short (the server announces the full Content-Length, sends half, closes) is
# retried and the read is byte-exact; when every attempt is cut short the open fails with EIO
# within the retry bound, nothing enters the cache (no entry, no temp file), and the next
# read after the fault is gone is byte-exact. Never wrong bytes.
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
for i in 1 2 3; do
	make_png "$E2E_T/p$i.png" 120 120 "$i" # ~43 KB: several TCP segments
	api_curl v1 -F "file=@$E2E_T/p$i.png;filename=t$i.png" -F "id=t$i.png" -o /dev/null ||
		fail "seeding t$i.png"
done
mount_fs "$M"
ls "$M/images" >/dev/null

log "one truncated reply: retried, byte-exact"
emu_stats_reset
fault_add '{"op":"images.blob","mode":"truncate","count":1}'
cmp "$E2E_T/p1.png" "$M/images/t1.png" || fail "t1 differs after one truncated reply"
expect_eq "blob requests" "$(emu_op images.blob)" 2
cache_has t1.png || fail "t1 not cached after a good read"

log "every reply truncated: EIO within the bound, nothing cached"
fault_add '{"op":"images.blob","mode":"truncate"}'
start=$(ms_now)
timeout 80 python3 - "$M/images/t2.png" <<'EOF' || fail "read of an always-truncated blob did not fail with EIO"
import errno, sys
try:
    data = open(sys.argv[1], "rb").read()
except OSError as e:
    sys.exit(0 if e.errno == errno.EIO else f"errno {errno.errorcode.get(e.errno)}")
sys.exit(f"read returned {len(data)} bytes")
EOF
ms=$(($(ms_now) - start))
log "EIO after $ms ms, $(emu_op images.blob) blob requests in all"
((ms < 45000)) || fail "EIO took $ms ms (retry budget is 30 s)"
cache_has t2.png && fail "a truncated blob entered the cache"
expect_eq "temp files in the cache" "$(cache_tmp_count)" 0
grep -q "t2.png" "${FS_LOG[$M]}" || fail "no log line names the failed read"

log "a second open while faults persist: EIO again, not bytes from a bad cache"
expect_errno EIO "open('$M/images/t2.png', 'rb').read()"
faults_clear

log "fault gone: byte-exact, cached once"
emu_stats_reset
cmp "$E2E_T/p2.png" "$M/images/t2.png" || fail "t2 differs once the server is healthy"
cmp "$E2E_T/p2.png" "$M/images/t2.png" || fail "t2 differs on the second read"
expect_eq "blob requests once healthy" "$(emu_op images.blob)" 1
cache_has t2.png || fail "t2 not cached"

log "truncated replies on several parallel readers: each read byte-exact or EIO"
fault_add '{"op":"images.blob","mode":"truncate","ratio":0.5,"seed":3}'
ok=0
for round in 1 2 3; do
	umount_fs "$M"
	rm -rf "$E2E_T/cache"
	mount_fs "$M"
	pids=()
	for i in 1 2 3; do
		(
			if cat "$M/images/t$i.png" >"$E2E_T/r$i.$round" 2>"$E2E_T/r$i.err"; then
				cmp -s "$E2E_T/p$i.png" "$E2E_T/r$i.$round" || echo "t$i: wrong bytes" >>"$E2E_T/bad"
			else
				grep -q "Input/output error" "$E2E_T/r$i.err" || echo "t$i: $(cat "$E2E_T/r$i.err")" >>"$E2E_T/bad"
			fi
		) &
		pids+=($!)
	done
	wait "${pids[@]}"
	[[ -s $E2E_T/bad ]] && fail "$(cat "$E2E_T/bad")"
	ok=$((ok + 1))
done
faults_clear
cache_verify "$E2E_T/cache"
expect_eq "temp files in the cache" "$(cache_tmp_count)" 0
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

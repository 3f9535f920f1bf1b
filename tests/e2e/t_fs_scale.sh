#!/usr/bin/env bash
# 10,000 images listed with one or two list requests and no per-file requests; daemon memory
# per listed image; 8 processes copying in and reading out at once.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --allowed 100000
emu_seed 10000 s- 80
M=$E2E_T/mnt
mount_fs "$M"

log "ls -l of 10,000 images"
emu_stats_reset
start=$(date +%s%N)
ls -l "$M/images" >"$E2E_T/ls.out" || fail "ls -l"
ms=$((($(date +%s%N) - start) / 1000000))
expect_eq "entries" "$(grep -c ' s-' "$E2E_T/ls.out")" 10000
lists=$(emu_op images.list_v2)
((lists >= 1 && lists <= 2)) || fail "list requests: $lists"
expect_eq "get requests" "$(emu_op images.get)" 0
expect_eq "blob requests" "$(emu_op images.blob)" 0
find "$M/images" -type f | wc -l | grep -qx 10000 || fail "find"
total=$(($(emu_total) - $(emu_op stats.get))) # find calls statfs
[[ $total == "$lists" ]] || fail "requests besides the listing: $(curl -fsS "$EMU_ADMIN/stats")"
echo "ls -l of 10,000 images: $ms ms, $lists list request(s)"

log "daemon memory per listed image (warm daemon, second 10,000)"
M2=$E2E_T/mnt2
mount_fs "$M2" "dir_ttl=1,cache_dir=$E2E_T/cache2"
ls "$M2/images" >/dev/null
rss1=$(awk '/^VmRSS:/ { print $2 }' "/proc/${FS_PID[$M2]}/status")
emu_seed 10000 t- 80
sleep 1.2
expect_eq "entries after the second seed" "$(ls "$M2/images" | wc -l)" 20000
rss2=$(awk '/^VmRSS:/ { print $2 }' "/proc/${FS_PID[$M2]}/status")
per=$(((rss2 - rss1) * 1024 / 10000))
echo "daemon RSS +$((rss2 - rss1)) KiB for 10,000 more images: ~$per bytes per image"
if grep -qa -e __asan_init -e __tsan_init "$IMAGESFS_BIN/mount.imagesfs"; then
	echo "(sanitizer build: allocator overhead makes this number meaningless; not checked)"
else
	((per < 300)) || fail "daemon memory per listed image: $per bytes"
fi
umount_fs "$M2"

log "8 processes copying in and reading out at once"
for p in $(seq 1 8); do
	mkdir -p "$E2E_T/src$p"
	for i in 1 2 3; do make_png "$E2E_T/src$p/i$i.png" 24 24 $((p * 10 + i)); done
done
emu_stats_reset
pids=()
for p in $(seq 1 8); do
	(
		for i in 1 2 3; do
			cp "$E2E_T/src$p/i$i.png" "$M/images/par-$p-$i.png" || exit 1
		done
		for i in 1 2 3; do
			cmp "$E2E_T/src$p/i$i.png" "$M/images/par-$p-$i.png" || exit 2
			cat "$M/images/s-00$p$i$i$i" >/dev/null || exit 3
		done
	) &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a parallel worker failed"; done
expect_eq "uploads" "$(emu_op images.upload)" 24
same=$(for p in $(seq 1 8); do cat "$M/images/s-000001" >/dev/null & done; wait; emu_op images.blob)
((same <= 25)) || fail "blob requests: $same"
umount_fs "$M"
echo PASS

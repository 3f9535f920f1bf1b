#!/usr/bin/env bash
# 10,000 images listed with one or two list requests, no per-file requests and no per-file
# FUSE round trips (counted by the daemon); cold reads right after the listing are
# byte-exact although the kernel cached size 0; daemon memory per listed image; 8 processes
# copying in and reading out at once.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --allowed 100000
emu_seed 10000 s- 80
M=$E2E_T/mnt
mount_fs "$M"
# ops_snap MOUNT FILE: saves the daemon's counts of served FUSE operations (hidden root
# xattr; reading it is one GETXATTR). ops_diff FILE1 FILE2 NAME: NAME's growth in between.
ops_snap() {
	python3 -c 'import os, sys; sys.stdout.write(os.getxattr(sys.argv[1], "user.imagesfs.ops").decode())' \
		"$1" >"$2" || fail "cannot read the op counters"
}
ops_diff() { echo $(($(awk -v k="$3" '$1 == k { print $2 }' "$2") - $(awk -v k="$3" '$1 == k { print $2 }' "$1"))); }

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

log "a warm ls -l of 10,000 images costs no per-file FUSE round trip"
api0=$(emu_total)
ops_snap "$M" "$E2E_T/ops0"
ls -l "$M/images" >"$E2E_T/ls2.out" || fail "second ls -l"
sizes() { awk 'NF >= 9 { print $5, $NF }' "$1"; } # ls prints the year for a future mtime
[[ $(sizes "$E2E_T/ls.out") == "$(sizes "$E2E_T/ls2.out")" ]] || fail "the second ls -l differs"
ops_snap "$M" "$E2E_T/ops1"
ga=$(ops_diff "$E2E_T/ops0" "$E2E_T/ops1" getattr) lk=$(ops_diff "$E2E_T/ops0" "$E2E_T/ops1" lookup)
gx=$(($(ops_diff "$E2E_T/ops0" "$E2E_T/ops1" getxattr) - 1)) # minus our own read
rd=$(ops_diff "$E2E_T/ops0" "$E2E_T/ops1" readdirplus)
echo "second ls -l: $rd readdirplus, $ga getattr, $gx getxattr, $lk lookup"
((ga <= 5)) || fail "ls -l made $ga GETATTRs (attributes of listed images must stay cached)"
((gx <= 5)) || fail "ls -l made $gx GETXATTRs (security.*/system.* must be ENOTSUP)"
((lk <= 5)) || fail "ls -l made $lk LOOKUPs"
((rd >= 1)) || fail "ls -l made no READDIRPLUS at all: counters broken?"
expect_eq "API requests of the second ls -l" "$(($(emu_total) - api0))" 0

log "cold reads right after ls -l (the kernel cached size 0) are byte-exact"
ids=(s-000010 s-000011 s-000012 s-000013 s-000014 s-000015 s-000016 s-000017)
for id in "${ids[@]}"; do
	curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
		"$EMU_URL/accounts/$ACCOUNT/images/v1/$id/blob" -o "$E2E_T/ref-$id" || fail "ref $id"
done
expect_eq "size of a listed, never-opened image" "$(stat -c %s "$M/images/${ids[0]}")" 0
cmp "$E2E_T/ref-${ids[0]}" "$M/images/${ids[0]}" || fail "cmp after ls -l"
expect_eq "size after the first open" "$(stat -c %s "$M/images/${ids[0]}")" \
	"$(stat -c %s "$E2E_T/ref-${ids[0]}")"
cat "$M/images/${ids[1]}" >"$E2E_T/cat1" && cmp "$E2E_T/ref-${ids[1]}" "$E2E_T/cat1" || fail "cat"
cp "$M/images/${ids[2]}" "$E2E_T/cp2" && cmp "$E2E_T/ref-${ids[2]}" "$E2E_T/cp2" || fail "cp"
python3 - "$M/images" "$E2E_T" "${ids[@]:3}" <<'EOF' || fail "python reads after ls -l"
import mmap, os, sys
mnt, ref, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
for i, n in enumerate(ids):
    want = open(os.path.join(ref, "ref-" + n), "rb").read()
    with open(os.path.join(mnt, n), "rb") as f:
        if i % 2:
            got = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)[:]
        else:
            got = f.read()
    if got != want:
        sys.exit("%s: %d bytes read, %d expected" % (n, len(got), len(want)))
    if os.stat(os.path.join(mnt, n)).st_size != len(want):
        sys.exit("%s: wrong size after the first open" % n)
EOF
ops_snap "$M" "$E2E_T/ops2"
(($(ops_diff "$E2E_T/ops1" "$E2E_T/ops2" inval_attr) >= ${#ids[@]})) ||
	fail "cold opens after ls -l sent no attribute invalidation"

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
	((per < 200)) || fail "daemon memory per listed image: $per bytes (target < 200)"
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

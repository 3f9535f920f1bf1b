#!/usr/bin/env bash
# New names looked up once the listing is older than dir_ttl (a long copy, rsync's temp
# names) cost one listing per dir_ttl, not one image-details request each: the cause of the
# 564 extra GETs of a 374 s rsync under the real rate limit (issue 8).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
emu_seed 5 s- 100
make_pngs "$E2E_T/src" 40
M=$E2E_T/mnt
mount_fs "$M" "dir_ttl=1"
ls "$M/images" >/dev/null || fail "ls"
sleep 1.1 # the listing is stale now

log "40 lookups of new names and a copy of 40 files with a stale listing"
emu_stats_reset
for i in $(seq 40); do stat "$M/images/.tmp-$i" >/dev/null 2>&1 && fail ".tmp-$i exists"; done
cp "$E2E_T"/src/*.png "$M/images/" || fail "cp"
gets=$(emu_op images.get)
lists=$(emu_op images.list_v2)
echo "image-details requests: $gets, list requests: $lists"
expect_eq "image-details requests" "$gets" 0
((lists >= 1 && lists <= 10)) || fail "list requests: $lists"
expect_eq "uploads" "$(emu_op images.upload)" 40
stat "$M/images/s-000002" >/dev/null || fail "a seeded image is not found after the relisting"

log "an image added elsewhere is found by a lookup once the listing is stale"
curl -fsS -X POST -d '{"count":1,"prefix":"late-","size":100}' "$EMU_ADMIN/seed" >/dev/null
sleep 1.1
stat "$M/images/late-000000" >/dev/null || fail "late-000000 not found"
umount_fs "$M"
echo "PASS t_fs_lookup_relist"

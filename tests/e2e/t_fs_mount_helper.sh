#!/usr/bin/env bash
# mount(8) integration: with mount.imagesfs installed as /sbin/mount.imagesfs, both
# `mount -t imagesfs ACCOUNT DIR -o ...` and an fstab line work, and umount(8) unmounts.
# The install is simulated inside a private mount namespace (unshare -m): /usr/sbin is
# replaced there by a symlink farm that adds mount.imagesfs, so the machine is untouched.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

command -v unshare >/dev/null || fail "unshare (util-linux) is missing"
[[ $(id -u) -eq 0 ]] || { echo "SKIP: mount(8) helpers need root"; exit 77; }

emu_start
emu_seed 3
M=$E2E_T/mnt
SB=$E2E_T/sbin
mkdir -p "$M" "$SB"
for f in /usr/sbin/*; do ln -s "$f" "$SB/"; done
ln -sf "$IMAGESFS_BIN/mount.imagesfs" "$SB/mount.imagesfs"
printf 'token=%s\n' "$IMAGESFS_EMULATOR_TOKEN" >"$E2E_T/cred"
chmod 600 "$E2E_T/cred"
printf '%s %s imagesfs _netdev,noauto,api_url=%s,cache_dir=%s,credentials=%s 0 0\n' \
	"$ACCOUNT" "$M" "$EMU_URL" "$E2E_T/cache" "$E2E_T/cred" >"$E2E_T/fstab"

# Runs in the private namespace; prints what the checks need, one item per line.
cat >"$E2E_T/inner.sh" <<'INNER'
set -euo pipefail
mount --bind "$SB" /usr/sbin
wait_gone() { for _ in $(seq 50); do mountpoint -q "$M" || return 0; sleep 0.1; done; return 1; }

echo "== mount -t"
CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN timeout 20 \
	mount -t imagesfs -o "api_url=$EMU_URL,cache_dir=$E2E_T/cache,_netdev" "$ACCOUNT" "$M"
mountpoint -q "$M"
findmnt -n -o FSTYPE,SOURCE "$M"
ls "$M/images" | wc -l
umount "$M"
wait_gone

echo "== fstab"
timeout 20 mount -T "$E2E_T/fstab" "$M"
ls "$M/images" | wc -l
cat "$M/stats"
umount "$M"
wait_gone
echo "== done"
INNER

log "mount -t imagesfs and an fstab line, in a private mount namespace"
export SB M E2E_T EMU_URL ACCOUNT
out=$(timeout 90 unshare -m --propagation private bash "$E2E_T/inner.sh" 2>&1) ||
	fail "mount(8) run failed: $out"
echo "$out"
grep -qx "fuse.imagesfs imagesfs:$ACCOUNT" <<<"$out" || fail "findmnt shows no imagesfs mount"
expect_eq "images seen via mount -t and via fstab" "$(grep -cx 3 <<<"$out")" 2
grep -qF '{"count":{"allowed":100000,"current":3}}' <<<"$out" || fail "stats via fstab mount"
grep -qx "== done" <<<"$out" || fail "did not finish"
mountpoint -q "$M" && fail "the namespace's mount leaked out"
echo "PASS"

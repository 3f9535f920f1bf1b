#!/usr/bin/env bash
# A tiny cache_size: reads stay byte-exact and the cache directory never grows past the cap.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
CAP=65536
mount_fs "$M" "cache_size=64K"
for i in $(seq 1 12); do
	make_png "$E2E_T/p$i.png" 60 60 "$i" # ~11 KB each, uncompressed
	cp "$E2E_T/p$i.png" "$M/images/p$i.png" || fail "cp p$i"
done
cache_bytes() { find "$E2E_T/cache" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
(($(cache_bytes) <= CAP + 16384)) || fail "cache holds $(cache_bytes) bytes after uploads (cap $CAP)"
for round in 1 2; do
	for i in $(seq 1 12); do
		cmp "$E2E_T/p$i.png" "$M/images/p$i.png" || fail "p$i differs (round $round)"
		b=$(cache_bytes)
		((b <= CAP + 16384)) || fail "cache holds $b bytes (cap $CAP)"
	done
done
umount_fs "$M"
echo PASS

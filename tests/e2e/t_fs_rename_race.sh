#!/usr/bin/env bash
# A rename keeps the inode the kernel knows: opens of the source that arrive while the
# rename's upload is on the network (stalled here) keep working. The reader reads the exact
# bytes after the rename has committed, an O_TRUNC writer opened meanwhile closes cleanly,
# the daemon touches no freed node (the ASan build exits 86 on a use-after-free, which
# umount_fs reports), and the renamed image keeps its exact size.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"
make_png "$E2E_T/a.png" 64 64 1
size=$(stat -c %s "$E2E_T/a.png")

# race READ|TRUNC: mv SRC DST with the upload stalled 3 s; after 1 s open SRC, hold it 4 s
# (the rename commits meanwhile), then read (or close without writing).
race() {
	local how=$1 src=$2 dst=$3 mv_pid
	cp "$E2E_T/a.png" "$M/images/$src" || fail "cp $src"
	ls -l "$M/images/" >/dev/null
	curl -fsS -X POST -d '{"op":"images.upload","mode":"stall","stall_ms":3000,"count":1}' \
		"$EMU_ADMIN/faults" >/dev/null || fail "adding the stall fault"
	mv "$M/images/$src" "$M/images/$dst" &
	mv_pid=$!
	sleep 1
	timeout 30 python3 - "$how" "$M/images/$src" "$E2E_T/a.png" <<'EOF' || fail "$how open of $src during the rename"
import os, sys, time
how, path, orig = sys.argv[1], sys.argv[2], sys.argv[3]
want = open(orig, "rb").read()
if how == "READ":
    with open(path, "rb") as f:      # opened while the rename uploads
        time.sleep(4)                # the rename commits meanwhile
        got = f.read()
    if got != want:
        sys.exit("read %d bytes after the rename, expected %d" % (len(got), len(want)))
else:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    time.sleep(4)
    os.close(fd)                     # nothing written: nothing changes
EOF
	wait "$mv_pid" || fail "mv $src $dst"
	[[ -e $M/images/$src ]] && fail "$src still listed after the rename"
	cmp -s "$M/images/$dst" "$E2E_T/a.png" || fail "$dst differs from the original"
	expect_eq "size of $dst" "$(stat -c %s "$M/images/$dst")" "$size"
}

log "reader opened during a rename"
race READ a.png b.png
log "the renamed image keeps its exact size (no download needed)"
emu_stats_reset
mv "$M/images/b.png" "$M/images/a-much-longer-name-than-before.png" || fail "mv to a long name"
expect_eq "size after a rename to a longer name" \
	"$(stat -c %s "$M/images/a-much-longer-name-than-before.png")" "$size"
mv "$M/images/a-much-longer-name-than-before.png" "$M/images/c.png" || fail "mv back to short"
cmp -s "$M/images/c.png" "$E2E_T/a.png" || fail "c.png differs"
expect_eq "downloads for renames of a cached image" "$(emu_op images.blob)" 0
log "O_TRUNC writer opened during a rename"
race TRUNC d.png e.png
umount_fs "$M"
echo PASS

#!/usr/bin/env bash
# -o writeback (issue 12, part 3): operations on a path with a pending upload are ordered
# after it, and a clean unmount waits for pending uploads. Uploads are held with a 503 rule
# (the journal's workers keep retrying) and released a second later, while the operation
# waits:
#  1. `mv` of a pending file: the account ends with the new name only (the old id's upload
#     landed first and was then deleted, or never left); nothing duplicated.
#  2. `rm` of a pending file: the account ends without it (an upload landing after the delete
#     would bring it back).
#  3. a refused upload (not an image): `imagesfs sync` names it, one log line says where its
#     bytes are kept (a file in <cache>/lost+found holding them); fsync of such a file
#     returns EIO.
#  4. unmount with pending uploads: the daemon logs the bounded wait, stores every upload
#     before it exits (0), and leaves the journal and pins empty.
# shellcheck disable=SC2015,SC2119 # `a && b || fail` is intended; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

emu_start
M=$E2E_T/mnt
C=$E2E_T/cache
I=$M/images
entries() { journal_entries "$C"; }
pins() { { find "$C/v1/pin" -type f 2>/dev/null || true; } | wc -l; }
# Retry-After 1 spreads one attempt's 5 tries over 4 s or more, so the release a second
# later comes during the attempt that is under way when the operation starts waiting: it
# waits for that attempt, which then succeeds. (With retry_after 0 the 5 tries can all fail
# within the second, and an operation waiting on a failed attempt fails: ETIMEDOUT,
# t_rel_writeback_wait.sh.)
HOLD='{"op":"images.upload","mode":"status","status":503,"retry_after":1}'
# release_later: clears the fault rules a second from now (the caller's operation waits).
release_later() {
	(
		sleep 1
		faults_clear
	) &
	REL_KILL_PIDS+=($!)
}
for i in 1 2 3; do make_png "$E2E_T/f$i.png" 15 15 "$i"; done
rel_mount "$M" "$EMU_URL" "writeback"

log "mv of a file whose upload is pending"
fault_add "$HOLD"
cp "$E2E_T/f1.png" "$I/a.png" || fail "cp a.png"
expect_eq "user.state of a.png" "$(getfattr --absolute-names --only-values -n user.state "$I/a.png")" pending
api_has_id a.png && fail "a.png stored although uploads are held"
release_later
mv "$I/a.png" "$I/b.png" || fail "mv of a pending file"
"$IMAGESFS_BIN/imagesfs" sync "$M" || fail "imagesfs sync after mv"
expect_eq "images after mv" "$(api_ids | sort | tr '\n' ' ')" "b.png "
api_blob b.png "$E2E_T/got" && cmp -s "$E2E_T/f1.png" "$E2E_T/got" || fail "b.png does not hold a.png's bytes"
[[ -e $I/a.png ]] && fail "the mount still shows a.png"
cmp "$E2E_T/f1.png" "$I/b.png" || fail "b.png reads wrong"

log "rm of a file whose upload is pending"
fault_add "$HOLD"
cp "$E2E_T/f2.png" "$I/c.png" || fail "cp c.png"
release_later
rm "$I/c.png" || fail "rm of a pending file"
"$IMAGESFS_BIN/imagesfs" sync "$M" || fail "imagesfs sync after rm"
api_has_id c.png && fail "c.png is in the account after rm (its upload landed after the delete)"
[[ -e $I/c.png ]] && fail "the mount still shows c.png"
expect_eq "images after rm" "$(api_ids | sort | tr '\n' ' ')" "b.png "

log "a refused write-back upload: one log line naming it and where its bytes are"
printf 'not an image\n' >"$E2E_T/bad.png"
cp "$E2E_T/bad.png" "$I/bad.png" || fail "cp bad.png (write-back: close returns once journaled)"
"$IMAGESFS_BIN/imagesfs" sync "$M" 2>"$E2E_T/sync.err" && fail "imagesfs sync exited 0 for a refused upload"
grep -q "not stored: images/bad.png" "$E2E_T/sync.err" || fail "sync said: $(cat "$E2E_T/sync.err")"
expect_eq "abandoned log lines" "$(grep -c "abandoned uploading 'images/bad.png'" "${FS_LOG[$M]}")" 1
lost=$(grep -o "abandoned uploading 'images/bad.png'.*kept in '[^']*'" "${FS_LOG[$M]}" | sed "s/.*kept in '\([^']*\)'/\1/")
[[ $lost == "$C/lost+found/"* ]] || fail "the log does not name a file in lost+found: '$lost'"
cmp "$E2E_T/bad.png" "$lost" || fail "the file the log names does not hold the refused bytes"
api_has_id bad.png && fail "bad.png stored"
# fsync of a file whose upload the API refuses returns that error (EIO), not 0
expect_errno EIO "fd = os.open('$I/bad2.png', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644); os.write(fd, b'not an image either'); os.fsync(fd)"
"$IMAGESFS_BIN/imagesfs" sync "$M" 2>/dev/null && fail "imagesfs sync exited 0 after the refused bad2.png"
api_has_id bad2.png && fail "bad2.png stored"

log "unmount with pending uploads: they are stored before the daemon exits"
mkdir "$E2E_T/many"
for i in $(seq 12); do cp "$E2E_T/f3.png" "$E2E_T/many/m$i.png" && printf '%s' "$i" >>"$E2E_T/many/m$i.png"; done
fault_add "$HOLD"
cp -r "$E2E_T/many" "$I/" || fail "cp -r many"
(($(entries) > 0)) || fail "nothing pending before the unmount"
api_has_id many/m1.png && fail "many/m1.png stored although uploads are held"
release_later
umount_fs "$M" # waits for the daemon's exit status (0)
grep -q "unmounting: waiting up to .* pending journal entries" "${FS_LOG[$M]}" ||
	fail "no log line about the wait at unmount"
grep -q "all pending uploads stored" "${FS_LOG[$M]}" || fail "no log line that the wait ended"
for i in $(seq 12); do
	api_blob "many/m$i.png" "$E2E_T/got" || fail "many/m$i.png not stored at unmount"
	cmp -s "$E2E_T/many/m$i.png" "$E2E_T/got" || fail "many/m$i.png stored wrong"
done
expect_eq "journal entries after unmount" "$(entries)" 0
expect_eq "pins after unmount" "$(pins)" 0
expect_eq "images at the end" "$(api_ids | wc -l)" 13
echo PASS

#!/usr/bin/env bash
# -o log_file=PATH: a daemonized mount writes its log lines to a private file (even given a
# relative path), one line per failure naming the file, the operation and the API's reason,
# and never the token.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
mkdir -p "$M" "$E2E_T/work"
cd "$E2E_T/work" || fail "cd"

log "daemon mode with a relative log_file"
CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN timeout 20 "$IMAGESFS_BIN/mount.imagesfs" \
	"$ACCOUNT" "$M" -o "api_url=$EMU_URL,cache_dir=$E2E_T/cache,log_file=mount.log" ||
	fail "mount with log_file failed"
mountpoint -q "$M" || fail "not mounted"
L=$E2E_T/work/mount.log
[[ -f $L ]] || fail "log file not created at the caller's relative path"
expect_eq "log file mode" "$(stat -c %a "$L")" 600
grep -q "mounted account $ACCOUNT" "$L" || fail "no start line in the log: $(cat "$L")"

log "a refused upload is one clear line"
printf 'not an image\n' >"$E2E_T/bad.png"
cp "$E2E_T/bad.png" "$M/images/bad.png" 2>/dev/null && fail "uploading a text file succeeded"
grep -E "cannot upload 'images/bad.png': HTTP 415, code 5455: Unsupported image format" "$L" >/dev/null ||
	fail "no upload failure line: $(cat "$L")"
expect_eq "failure lines for one refused upload" "$(grep -c "bad.png" "$L")" 1
grep -qF "$IMAGESFS_EMULATOR_TOKEN" "$L" && fail "the token appears in the log"

fusermount3 -u "$M" || fail "unmount"
for ((i = 0; i < 50; i++)); do mountpoint -q "$M" || break; sleep 0.1; done
mountpoint -q "$M" && fail "still mounted"
echo "PASS"

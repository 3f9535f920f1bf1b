#!/usr/bin/env bash
# Mounting: failures are fast and clear, secrets stay out of argv, credentials files are
# checked, daemon mode returns when ready, remount reads cached blobs without network, ro.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
emu_seed 3
M=$E2E_T/mnt
mkdir -p "$M"
run_mount() { # env-assignments... -- args: runs the helper in daemon mode, capped at 20 s
	timeout 20 "$IMAGESFS_BIN/mount.imagesfs" "$ACCOUNT" "$M" -o "api_url=$EMU_URL,cache_dir=$E2E_T/cache$1"
}

log "wrong token: non-zero exit, fast, one clear line, nothing mounted"
start=$(date +%s%N)
CLOUDFLARE_API_TOKEN=wrong-token run_mount "" 2>"$E2E_T/err" && fail "mount with a wrong token succeeded"
ms=$((($(date +%s%N) - start) / 1000000))
((ms < 5000)) || fail "wrong-token failure took $ms ms"
grep -q "cannot access account '$ACCOUNT' at $EMU_URL: HTTP 401, code 10000" "$E2E_T/err" ||
	fail "message: $(cat "$E2E_T/err")"
grep -q wrong-token "$E2E_T/err" && fail "the token appears in the message"
mountpoint -q "$M" && fail "mounted anyway"

log "no credentials at all"
run_mount "" 2>"$E2E_T/err" && fail "mount without credentials succeeded"
grep -q "no credentials" "$E2E_T/err" || fail "message: $(cat "$E2E_T/err")"

log "secrets as options are refused"
for o in token=abc api_token=abc key=abc api_key=abc auth_key=abc password=abc secret=abc; do
	CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN run_mount ",$o" 2>"$E2E_T/err" &&
		fail "-o $o accepted"
	grep -q "refusing option '${o%%=*}=...'" "$E2E_T/err" || fail "message for $o: $(cat "$E2E_T/err")"
	grep -q abc "$E2E_T/err" && fail "the secret value is echoed"
done

log "credentials file: 0644 refused, 0600 accepted, token= and plain forms"
printf '%s\n' "$IMAGESFS_EMULATOR_TOKEN" >"$E2E_T/cred"
chmod 644 "$E2E_T/cred"
run_mount ",credentials=$E2E_T/cred" 2>"$E2E_T/err" && fail "0644 credentials accepted"
grep -q "credentials file '$E2E_T/cred' is readable by group or others (mode 644); chmod 600 it" \
	"$E2E_T/err" || fail "message: $(cat "$E2E_T/err")"
chmod 640 "$E2E_T/cred"
run_mount ",credentials=$E2E_T/cred" 2>/dev/null && fail "0640 credentials accepted"
chmod 600 "$E2E_T/cred"
run_mount ",credentials=$E2E_T/cred" || fail "0600 credentials file refused"
mountpoint -q "$M" || fail "daemon mode returned before the mount was ready"
expect_eq "ls in daemon mode" "$(ls "$M/images" | wc -l)" 3
fusermount3 -u "$M" || fail "fusermount3 -u"
for ((i = 0; i < 50; i++)); do mountpoint -q "$M" || break; sleep 0.1; done
printf 'token=%s\n' "$IMAGESFS_EMULATOR_TOKEN" >"$E2E_T/cred2"
chmod 600 "$E2E_T/cred2"
run_mount ",credentials=$E2E_T/cred2,rw,_netdev,nofail,noatime,nodev,nosuid" ||
	fail "token= credentials file / mount(8) options refused"
fusermount3 -u "$M"
for ((i = 0; i < 50; i++)); do mountpoint -q "$M" || break; sleep 0.1; done
ps -eo args | grep -F "$IMAGESFS_EMULATOR_TOKEN" | grep -v grep && fail "token in some process's argv"

log "SIGTERM unmounts cleanly"
mount_fs "$M"
kill -TERM "${FS_PID[$M]}"
for ((i = 0; i < 100; i++)); do mountpoint -q "$M" || break; sleep 0.1; done
mountpoint -q "$M" && fail "still mounted after SIGTERM"
wait "${FS_PID[$M]}" || fail "daemon exited non-zero after SIGTERM"
unset "FS_PID[$M]"

log "remount: cached blobs are read with no network"
mount_fs "$M"
cat "$M/images/seed-000001" >"$E2E_T/first" || fail "first read"
umount_fs "$M"
mount_fs "$M"
ls "$M/images" >/dev/null
emu_stats_reset
cat "$M/images/seed-000001" >"$E2E_T/second" || fail "read after remount"
cmp "$E2E_T/first" "$E2E_T/second" || fail "bytes differ after remount"
expect_eq "blob calls after remount" "$(emu_op images.blob)" 0
umount_fs "$M"

log "ro mount"
mount_fs "$M" ro
cat "$M/images/seed-000002" >/dev/null || fail "read on ro"
make_png "$E2E_T/p.png"
expect_errno EROFS "open('$M/images/new.png', 'wb')"
expect_errno EROFS "os.unlink('$M/images/seed-000002')"
expect_errno EROFS "os.mkdir('$M/images/d')"
expect_errno EROFS "os.setxattr('$M/images/seed-000002', 'user.creator', b'x')"
expect_errno EROFS "os.rename('$M/images/seed-000002', '$M/images/x')"
expect_errno EROFS "open('$M/keys/newkey', 'w')"
umount_fs "$M"
echo PASS

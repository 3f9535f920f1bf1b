#!/usr/bin/env bash
# The imagesfs command: `status MOUNT` prints the table, `status --watch MOUNT` redraws one
# progress line a second under a pseudo-terminal (and prints plain lines into a pipe) that
# advances during a copy of 300 images; `refresh`; a clear message and a non-zero exit on a
# path that is not an imagesfs mount.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
CLI=$IMAGESFS_BIN/imagesfs
# 60 requests a second: the 300 uploads take a few seconds, so the line has time to move
mount_fs "$M" "rate_limit=60/1"
mkdir -p "$E2E_T/src"
python3 - "$E2E_T/src" <<'EOF'
import struct, sys, zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
for i in range(300):
    raw = b"\x00" + bytes([i & 255, i >> 8, 7])
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    open(f"{sys.argv[1]}/p{i:03d}.png", "wb").write(png)
EOF

log "status and refresh on a path that is not an imagesfs mount"
"$CLI" status "$E2E_T" >"$E2E_T/o" 2>"$E2E_T/e" && fail "status on a non-mount exited 0"
expect_eq "message" "$(cat "$E2E_T/e")" "imagesfs: '$E2E_T' is not an imagesfs mount"
"$CLI" status "$E2E_T/nothing-here" 2>/dev/null && fail "status on a missing path exited 0"
"$CLI" refresh "$E2E_T" 2>"$E2E_T/e" && fail "refresh on a non-mount exited 0"
grep -q "is not an imagesfs mount" "$E2E_T/e" || fail "refresh message: $(cat "$E2E_T/e")"
"$CLI" refresh "$M" nonsense 2>/dev/null
expect_eq "refresh with a bad word" "$?" 2
"$CLI" refresh "$M" images || fail "refresh images"
"$CLI" refresh "$M" || fail "refresh (all)"

log "status --watch under a pseudo-terminal during a copy of 300 images"
python3 - "$CLI" "$M" "$E2E_T/src" "$E2E_T/watch.tty" <<'EOF' || fail "watch under a pty"
import os, pty, re, select, signal, subprocess, sys, time
cli, mnt, src, out_path = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execv(cli, [cli, "status", "--watch", mnt])
out = b""
def pump(secs):
    global out
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                return
pump(1.2)
cp = subprocess.Popen(["cp", "-r", src + "/.", mnt + "/images/"])
while cp.poll() is None:
    pump(0.2)
pump(2.5)
os.kill(pid, signal.SIGINT)
pump(0.5)
_, st = os.waitpid(pid, 0)
open(out_path, "wb").write(out)
if cp.returncode != 0:
    sys.exit(f"cp failed: {cp.returncode}")
if os.WEXITSTATUS(st) != 0:
    sys.exit(f"watch exited {os.WEXITSTATUS(st)}")
frames = out.split(b"\r\x1b[K")[1:]
done = [int(m.group(1)) for f in frames if (m := re.match(rb"uploads (\d+)/(\d+)", f))]
if len(frames) < 4 or len(done) != len(frames):
    sys.exit(f"expected redrawn progress lines, got {out[:400]!r}")
if any(b"\n" in f for f in frames[:-1]):
    sys.exit("a redrawn line ends in a newline on a terminal")
if done != sorted(done) or done[0] != 0 or done[-1] != 300:
    sys.exit(f"progress did not advance 0 -> 300: {done}")
moving = sorted(set(d for d in done if 0 < d < 300))
if not moving:
    sys.exit(f"no line showed the copy in progress: {done}")
print(f"{len(frames)} frames; uploads done went {' -> '.join(map(str, sorted(set(done))))}")
for f in frames[-3:]:
    print("  " + f.decode().strip())
EOF

log "status --watch into a pipe: plain lines"
"$CLI" status --watch "$M" >"$E2E_T/watch.txt" &
w=$!
sleep 1.5
kill -INT "$w"
wait "$w" || fail "watch into a pipe exited non-zero"
grep -q $'\r' "$E2E_T/watch.txt" && fail "carriage returns in plain output"
grep -qE '^uploads 300/300 \(0 in flight, 0 queued\), [0-9.]+/s, budget [0-9]+/[0-9]+, 429s 0, errors 0$' \
	"$E2E_T/watch.txt" || fail "plain line: $(cat "$E2E_T/watch.txt")"

log "status MOUNT: the table"
"$CLI" status "$M" >"$E2E_T/table" || fail "status on the mount"
cat "$E2E_T/table"
grep -qx "uploads     300 done, 0 in flight, 0 queued, 0 failed" "$E2E_T/table" ||
	fail "uploads line"
grep -qE "^budget      [0-9]+ of [0-9]+ requests left" "$E2E_T/table" || fail "budget line"
grep -qE "^  by op      .*upload 300" "$E2E_T/table" || fail "requests by operation"

umount_fs "$M"
"$CLI" status "$M" 2>/dev/null && fail "status after unmount exited 0"
echo "PASS"

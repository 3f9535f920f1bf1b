#!/usr/bin/env bash
# One images listing is bounded by the account: a server whose v2 listing never ends (every
# page 10,000 new ids and a new continuation_token) makes `ls images/` fail with EIO after
# max(allowed, current) * 1.1 + 10,000 images, with one log line, and the daemon's memory
# stays bounded across repeated tries. A listing in flight stops when the daemon is told
# to exit (SIGTERM), so the mount can always be taken down.
# shellcheck disable=SC2010 # ls is under test
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is needed"
echo 20000 >"$E2E_T/allowed"
# A fake API: stats from $E2E_T/allowed (current 5); endless v2 listing; nothing else.
python3 - "$E2E_T/allowed" "$E2E_T/pages" >"$E2E_T/srv.out" 2>"$E2E_T/srv.err" <<'EOF' &
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ALLOWED, PAGES = sys.argv[1], sys.argv[2]
lock = threading.Lock()
pages = [0]
def env(r):
    return json.dumps({"result": r, "success": True, "errors": [], "messages": []}).encode()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def send(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("/images/v1/stats"):
            allowed = int(open(ALLOWED).read())
            return self.send(env({"count": {"allowed": allowed, "current": 5}}))
        if path.endswith("/images/v2"):
            with lock:
                n = pages[0]
                pages[0] += 1
                open(PAGES, "w").write("%d\n" % pages[0])
            imgs = [{"id": "e%07d-%d" % (n, i), "filename": "f.png", "variants": [],
                     "uploaded": "2024-01-01T00:00:00.000Z", "requireSignedURLs": False}
                    for i in range(10000)]
            return self.send(env({"images": imgs, "continuation_token": "t%07d" % n}))
        self.send(json.dumps({"result": None, "success": False, "messages": [],
                              "errors": [{"code": 7003, "message": "No route"}]}).encode(), 404)
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
EOF
SRV_PID=$!
trap 'kill $SRV_PID 2>/dev/null; e2e_cleanup' EXIT
port=""
for ((i = 0; i < 100; i++)); do
	port=$(head -n 1 "$E2E_T/srv.out" 2>/dev/null || true)
	[[ $port =~ ^[0-9]+$ ]] && break
	sleep 0.05
done
[[ $port =~ ^[0-9]+$ ]] || fail "fake server did not start: $(cat "$E2E_T/srv.err")"
EMU_URL=http://127.0.0.1:$port/client/v4
M=$E2E_T/mnt
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

log "an endless listing fails with EIO after the account's allowance (cap 32,000)"
mount_fs "$M" "dir_ttl=1"
pid=${FS_PID[$M]}
# bounded: a process blocked in a FUSE request ignores timeout(1), so watch the daemon
# and SIGKILL it (which frees the blocked process) past 30 s or 256 MiB.
watch_ls() {
	local epid=$1 t0 rss
	t0=$(date +%s%N)
	while kill -0 "$epid" 2>/dev/null; do
		rss=$(rss_kib "$pid")
		ms=$((($(date +%s%N) - t0) / 1000000))
		if ((${rss:-0} > 256 * 1024 || ms > 30000)); then
			kill -9 "$pid"
			unset "FS_PID[$M]"
			fusermount3 -uz "$M"
			fail "the endless listing still runs after $ms ms, daemon RSS $((rss / 1024)) MiB; killed"
		fi
		sleep 0.1
	done
	wait "$epid" || fail "ls of the endless listing"
}
python3 -c '
import errno, os, sys
try:
    os.listdir(sys.argv[1])
except OSError as e:
    sys.exit(0 if e.errno == errno.EIO else "listing failed with %s" % e)
sys.exit("an endless listing succeeded")' "$M/images" &
watch_ls $!
log "failed after $ms ms"
n=$(grep -c "listing of 'images' exceeds 32000 images, more than the account's allowance; giving up" \
	"${FS_LOG[$M]}")
expect_eq "log lines for the capped listing" "$n" 1
log "repeated tries do not add up (the table is held to the cap: one page each)"
expect_eq "pages of the first listing" "$(cat "$E2E_T/pages")" 4
for ((i = 0; i < 4; i++)); do
	sleep 3.1 # past the failed listing's hold
	ls "$M/images" >/dev/null 2>&1 && fail "an endless listing succeeded"
done
expect_eq "pages after 4 more tries" "$(cat "$E2E_T/pages")" 8
rss=$(rss_kib "$pid")
log "daemon RSS $((rss / 1024)) MiB"
if ! ldd "$IMAGESFS_BIN/mount.imagesfs" | grep -q 'libasan'; then # ASan keeps freed memory
	((rss < 100 * 1024)) || fail "daemon RSS $((rss / 1024)) MiB after capped listings"
fi
umount_fs "$M"

log "SIGTERM stops a listing in flight (cap 10,000,000)"
echo 100000000 >"$E2E_T/allowed"
mount_fs "$M" "dir_ttl=1"
pid=${FS_PID[$M]}
ls "$M/images" >/dev/null 2>&1 &
ls_pid=$!
sleep 1.5
kill -0 "$ls_pid" 2>/dev/null || fail "the listing ended before SIGTERM (cap not in force?)"
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the daemon still runs 10 s after SIGTERM (listing not stopped)"
wait "$pid" || fail "the daemon exited with $? after SIGTERM"
unset "FS_PID[$M]"
for ((i = 0; i < 50; i++)); do
	kill -0 "$ls_pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$ls_pid" 2>/dev/null && fail "ls still blocked after the daemon exited"
grep -q "listing of 'images' stopped: unmounting" "${FS_LOG[$M]}" || fail "no log line for the stopped listing"
mountpoint -q "$M" && fusermount3 -u "$M"
echo PASS

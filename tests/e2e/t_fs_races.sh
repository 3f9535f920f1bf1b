#!/usr/bin/env bash
# Requests on one handle, or on one image, that run at once. The ASan build turns a race on
# freed memory into a daemon exit (86), which umount_fs reports.
#  - variants/: a writer grows the buffered document (realloc) while another thread preads
#    the same O_RDWR fd and a third closes dup'd fds (FLUSH parses the buffer).
#  - images/: plain readers open a file while its writer finishes (the writer's release
#    and the reader's open race): every read succeeds with the old or the new bytes, never
#    EAGAIN.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
M=$E2E_T/mnt
mount_fs "$M"
ls "$M/variants" >/dev/null || fail "ls variants"

log "variants/: write, pread and flush of one handle at once"
timeout 120 python3 - "$M/variants" <<'EOF' || fail "concurrent write/read/flush of a variant"
import errno, os, sys, threading, time
d = sys.argv[1]
for r in range(6):
    path = os.path.join(d, "race%d" % r)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    stop = threading.Event()
    errors = []
    def reader():
        while not stop.is_set():
            try:
                os.pread(fd, 65536, 0)
            except OSError as e:
                errors.append("pread: %s" % e)
                return
    def flusher():
        while not stop.is_set():
            try:
                os.close(os.dup(fd))     # FLUSH: parses the buffer (not JSON: EINVAL)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    errors.append("close(dup): %s" % e)
                    return
    ts = [threading.Thread(target=reader), threading.Thread(target=reader),
          threading.Thread(target=flusher)]
    for t in ts:
        t.start()
    off = 0
    try:
        while off + 16 <= 65536:         # every write grows the buffer: a realloc
            os.pwrite(fd, b"x" * 16, off)
            off += 16
    finally:
        stop.set()
        for t in ts:
            t.join()
    if errors:
        sys.exit(errors[0])
    got = os.pread(fd, 65536, 0)
    if got != b"x" * off:
        sys.exit("read back %d bytes, expected %d" % (len(got), off))
    try:
        os.close(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    for _ in range(50):                  # RELEASE (which drops the name) is asynchronous
        if not os.path.exists(path):
            break
        time.sleep(0.1)
    else:
        sys.exit("an invalid document became a variant")
EOF

log "images/: readers racing a writer's close never get EAGAIN"
make_png "$E2E_T/a.png" 32 32 1
make_png "$E2E_T/b.png" 32 32 2
cp "$E2E_T/a.png" "$M/images/r.png" || fail "cp"
timeout 180 python3 - "$M/images/r.png" "$E2E_T/a.png" "$E2E_T/b.png" <<'EOF' || fail "readers racing a writer"
import errno, os, sys, threading, time
path, pa, pb = sys.argv[1:4]
a, b = open(pa, "rb").read(), open(pb, "rb").read()
stop = threading.Event()
errors = []
reads = [0]
def reader():
    while not stop.is_set():
        try:
            with open(path, "rb") as f:
                got = f.read()
        except OSError as e:
            errors.append("open/read: %s" % e)
            return
        if got not in (a, b) and got != b"":   # "" = the truncated file while being written
            errors.append("read %d bytes that are neither version" % len(got))
            return
        reads[0] += 1
ts = [threading.Thread(target=reader) for _ in range(3)]
for t in ts:
    t.start()
try:
    for i in range(40):
        data = b if i % 2 == 0 else a
        for _ in range(500):             # EBUSY while readers hold the staged bytes
            try:
                f = open(path, "wb")        # O_TRUNC: replace the image
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)
        else:
            sys.exit("still busy after 5 s")
        with f:
            f.write(data)
        if errors:
            break
finally:
    stop.set()
    for t in ts:
        t.join()
if errors:
    sys.exit(errors[0])
print("reads:", reads[0])
EOF
umount_fs "$M"
echo PASS

#!/usr/bin/env bash
# Checks fs/SEMANTICS.md against a real mount: every row of its "Refusals" table is
# performed and must fail with exactly the errno the table states. A row whose operation
# this test does not know fails the test, so the document cannot drift from the code.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

DOC=${IMAGESFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/fs/SEMANTICS.md
[[ -r $DOC ]] || fail "cannot read $DOC"
emu_start
M=$E2E_T/mnt
mount_fs "$M"

log "fixtures"
make_png "$E2E_T/a.png" 8 8 1
make_png "$E2E_T/b.png" 8 8 2
cp "$E2E_T/a.png" "$M/images/sem.png" || fail "fixture sem.png"
cp "$E2E_T/b.png" "$M/images/sem2.png" || fail "fixture sem2.png"
setfattr -n user.metadata -v '{"fixture":true}' "$M/images/sem.png" || fail "fixture metadata"
mkdir "$M/images/semdir" && cp "$E2E_T/a.png" "$M/images/semdir/a.png" || fail "fixture dir"
printf '{"options":{"fit":"cover","metadata":"none","width":10,"height":10}}' \
	>"$M/variants/semv" || fail "fixture variant"

log "rows of the Refusals table"
python3 - "$DOC" "$M" <<'EOF' || fail "SEMANTICS.md rows do not hold"
import ctypes, errno, os, re, stat, sys

doc, mnt = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
SUBST = {"IMAGE2": "sem2.png", "IMAGE": "sem.png", "DIR2": "semdir2", "DIR": "semdir",
         "UUID": "0b8a2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "CONTROL": "bad\x01name",
         "VARIANT": "semv", "KEY": "default"}
counter = [0]

def path(rel):
    counter[0] += 1
    for k, v in SUBST.items():
        rel = re.sub(r"\b%s\b" % k, v, rel)
    rel = re.sub(r"\bNEW\b", "new%d" % counter[0], rel)
    return os.path.join(mnt, rel)

def renameat2(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")

def write_big(p, n):
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"\x89PNG" + b"x" * (n - 5))
        os.write(fd, b"yy")
    finally:
        try:
            os.close(fd)
        except OSError:
            pass

def close_after_text(p):
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, b"this is text, not an image or a document\n")
    os.close(fd)

XVAL = {"not JSON": (b"{bad", 0), "JSON array": (b"[1,2]", 0),
        "1100 bytes": (b'{"k":"' + b"x" * 1100 + b'"}', 0), "1025 bytes": (b"c" * 1025, 0),
        "1000 bytes": (b'{"k":"' + b"x" * 992 + b'"}', 0),
        "reserved key": (b'{"imagesfs":"v1 s=1"}', 0),
        "yes": (b"yes", 0), "XATTR_CREATE": (b"{}", os.XATTR_CREATE),
        "XATTR_REPLACE": (b"c", os.XATTR_REPLACE), "ftp://x": (b"ftp://x", 0)}

def op(name, p):
    """Returns a callable performing operation `name` (as written in the table) on p."""
    simple = {
        "open(O_WRONLY)": lambda: os.close(os.open(p, os.O_WRONLY)),
        "open(O_WRONLY|O_APPEND)": lambda: os.close(os.open(p, os.O_WRONLY | os.O_APPEND)),
        "open(O_RDWR)": lambda: os.close(os.open(p, os.O_RDWR)),
        "open(O_WRONLY|O_TRUNC)": lambda: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)),
        "truncate(1)": lambda: os.truncate(p, 1),
        "creat": lambda: os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)),
        "write(10 MB + 1)": lambda: write_big(p, 10 * 1024 * 1024 + 1),
        "write(64 KiB + 1)": lambda: write_big(p, 64 * 1024 + 1),
        "close after writing text": lambda: close_after_text(p),
        "link": lambda: os.link(p, p + ".link"),
        "symlink": lambda: os.symlink("target", p),
        "mknod": lambda: os.mknod(p, 0o644 | stat.S_IFIFO),
        "rmdir": lambda: os.rmdir(p),
        "unlink": lambda: os.unlink(p),
        "mkdir": lambda: os.mkdir(p),
        "rename(RENAME_EXCHANGE)": lambda: renameat2(p, path("images/IMAGE2"), 2),
        "rename(RENAME_NOREPLACE)": lambda: renameat2(p, path("images/IMAGE2"), 1),
    }
    if name in simple:
        return simple[name]
    m = re.fullmatch(r"rename to (\S+)", name)
    if m:
        return lambda: os.rename(p, path(m.group(1)))
    m = re.fullmatch(r"(set|remove|get)xattr\(([\w.]+)(?:, (.+))?\)", name)
    if m:
        kind, attr, arg = m.groups()
        if kind == "remove" and not arg:
            return lambda: os.removexattr(p, attr)
        if kind == "get" and not arg:
            return lambda: os.getxattr(p, attr)
        if kind == "set":
            val, flags = XVAL[arg] if arg else (b"x", 0)
            return lambda: os.setxattr(p, attr, val, flags)
    return None

rows, bad = 0, []
in_table = False
for line in open(doc):
    if line.startswith("## "):
        in_table = line.strip() == "## Refusals"
        continue
    if not in_table or not line.startswith("|") or line.startswith("|---"):
        continue
    cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    if cells[0] == "operation":
        continue
    opname, rel, ename = cells[0].strip("`"), cells[1].strip("`"), cells[2]
    want = getattr(errno, ename, None)
    fn = op(opname, path(rel))
    if fn is None or want is None:
        bad.append("row not checkable: " + line.strip())
        continue
    rows += 1
    try:
        fn()
        got = "success"
    except OSError as e:
        got = errno.errorcode.get(e.errno, str(e.errno))
    if got != ename:
        bad.append("%s on %s: expected %s, got %s" % (opname, rel, ename, got))
print("checked %d rows" % rows)
for b in bad:
    print("MISMATCH:", b)
sys.exit(1 if bad or rows < 30 else 0)
EOF

log "nothing changed by the refusals"
cmp "$E2E_T/a.png" "$M/images/sem.png" || fail "sem.png changed"
cmp "$E2E_T/b.png" "$M/images/sem2.png" || fail "sem2.png changed"
expect_eq "metadata" "$(getfattr --absolute-names --only-values -n user.metadata "$M/images/sem.png")" \
	'{"fixture":true}'
ls "$M/variants" | grep -qx public || fail "public variant gone"
expect_eq "images left" "$(cd "$M/images" && find . -type f | sort | tr '\n' ' ')" \
	"./sem.png ./sem2.png ./semdir/a.png "
umount_fs "$M"
echo PASS

#!/usr/bin/env bash
# Extended attributes: user.metadata, user.creator, user.requireSignedURLs and the read-only
# ones; errno precision; cp -a carrying user.* attributes onto a new image.
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
emu_seed 1 fn- 100 # filename = id + ".png": kept as an extension index, not a string
make_jpeg "$E2E_T/up.jpg" 3
curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" -F "file=@$E2E_T/up.jpg;filename=holiday.jpg" \
	-F id=fn-other "$EMU_URL/accounts/$ACCOUNT/images/v1" >/dev/null || fail "upload fn-other"
M=$E2E_T/mnt
mount_fs "$M"
I=$M/images
F=$I/x.png
gx() { getfattr --absolute-names --only-values -n "$1" "$2"; }
make_png "$E2E_T/x.png" 10 10 1
cp "$E2E_T/x.png" "$F" || fail "cp"

log "getfattr -d shows what an image has"
getfattr --absolute-names -d "$F" >"$E2E_T/d.out" || fail "getfattr -d"
for a in user.filename user.requireSignedURLs user.uploaded user.variants; do
	grep -q "^$a=" "$E2E_T/d.out" || fail "$a missing from getfattr -d"
done
grep -q "^user.metadata=" "$E2E_T/d.out" && fail "user.metadata listed without metadata"
expect_eq "filename" "$(gx user.filename "$F")" x.png
seeded=$(cd "$M/images" && ls | grep '^fn-0')
expect_eq "filename of a seeded image" "$(gx user.filename "$M/images/$seeded")" "$seeded.png"
expect_eq "a filename unlike the id" "$(gx user.filename "$M/images/fn-other")" holiday.jpg
expect_eq "rsu" "$(gx user.requireSignedURLs "$F")" false
gx user.uploaded "$F" | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' ||
	fail "uploaded is not RFC 3339 ms UTC: $(gx user.uploaded "$F")"
gx user.variants "$F" | grep -q "^${EMU_URL%/client/v4}/cdn/.*/x.png/public$" ||
	fail "variants: $(gx user.variants "$F")"
expect_errno ENODATA "os.getxattr('$F', 'user.metadata')"
expect_errno ENODATA "os.getxattr('$F', 'user.creator')"

log "setting metadata: one PATCH, normalized, visible in the API"
emu_stats_reset
setfattr -n user.metadata -v '{ "a": 1, "b": [true, null] }' "$F" || fail "set metadata"
expect_eq "patches" "$(emu_op images.edit)" 1
expect_eq "metadata" "$(gx user.metadata "$F")" '{"a":1,"b":[true,null]}'
curl -fsS -H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN" \
	"$EMU_URL/accounts/$ACCOUNT/images/v1/x.png" | grep -q '"meta":{"a":1' || fail "meta not in the API"
emu_stats_reset
expect_errno EINVAL "os.setxattr('$F', 'user.metadata', b'{not json')"
expect_errno EINVAL "os.setxattr('$F', 'user.metadata', b'[1,2]')"
expect_errno E2BIG "os.setxattr('$F', 'user.metadata', b'{\"k\":\"' + b'x'*1100 + b'\"}')"
expect_eq "no PATCH for invalid values" "$(emu_op images.edit)" 0
expect_eq "metadata unchanged" "$(gx user.metadata "$F")" '{"a":1,"b":[true,null]}'
expect_errno EEXIST "os.setxattr('$F', 'user.metadata', b'{}', os.XATTR_CREATE)"
expect_errno ENODATA "os.setxattr('$F', 'user.creator', b'c', os.XATTR_REPLACE)"

log "exact sizes and ERANGE"
python3 - "$F" <<'EOF' || fail "size query / ERANGE"
import errno, os, sys
f = sys.argv[1]
v = os.getxattr(f, "user.metadata")
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
n = libc.getxattr(f.encode(), b"user.metadata", None, 0)
assert n == len(v), (n, len(v))
buf = ctypes.create_string_buffer(n - 1)
assert libc.getxattr(f.encode(), b"user.metadata", buf, n - 1) == -1
assert ctypes.get_errno() == errno.ERANGE
names = libc.listxattr(f.encode(), None, 0)
assert names == len(b"\0".join(n.encode() for n in os.listxattr(f)) + b"\0"), names
buf = ctypes.create_string_buffer(3)
assert libc.listxattr(f.encode(), buf, 3) == -1 and ctypes.get_errno() == errno.ERANGE
EOF

log "creator and requireSignedURLs"
setfattr -n user.creator -v "someone" "$F" || fail "set creator"
expect_eq "creator" "$(gx user.creator "$F")" someone
expect_errno E2BIG "os.setxattr('$F', 'user.creator', b'c' * 1025)"
setfattr -x user.creator "$F" || fail "remove creator"
expect_errno ENODATA "os.getxattr('$F', 'user.creator')"
expect_errno EINVAL "os.setxattr('$F', 'user.requireSignedURLs', b'yes')"
setfattr -x user.metadata "$F" || fail "remove metadata"
expect_errno ENODATA "os.getxattr('$F', 'user.metadata')"
expect_errno ENODATA "os.removexattr('$F', 'user.metadata')"

log "read-only and foreign names, without network"
emu_stats_reset
for a in user.filename user.uploaded user.variants; do
	expect_errno EPERM "os.setxattr('$F', '$a', b'x')"
	expect_errno EPERM "os.removexattr('$F', '$a')"
done
expect_errno EOPNOTSUPP "os.getxattr('$F', 'security.capability')"
expect_errno ENOTSUP "os.setxattr('$F', 'security.selinux', b'x')"
expect_errno ENOTSUP "os.setxattr('$F', 'trusted.x', b'x')"
expect_errno EOPNOTSUPP "os.getxattr('$F', 'system.posix_acl_access')"
expect_errno EOPNOTSUPP "os.getxattr('$M/images', 'security.selinux')"
expect_errno EOPNOTSUPP "os.removexattr('$F', 'security.selinux')"
expect_errno ENOTSUP "os.setxattr('$F', 'user.unknown', b'x')"
expect_errno ENODATA "os.getxattr('$F', 'user.unknown')"
expect_eq "no API calls for refused xattrs" "$(emu_total)" 0

log "cp -a from a local file carries user.* attributes with the upload"
make_png "$E2E_T/src.png" 7 7 5
setfattr -n user.metadata -v '{"from":"local"}' "$E2E_T/src.png" 2>/dev/null ||
	{ echo "local filesystem has no user xattrs; skipping cp -a part"; umount_fs "$M"; echo PASS; exit 0; }
setfattr -n user.creator -v "cp-a" "$E2E_T/src.png"
emu_stats_reset
cp -a "$E2E_T/src.png" "$I/src.png" || fail "cp -a"
expect_eq "uploads" "$(emu_op images.upload)" 1
expect_eq "patches" "$(emu_op images.edit)" 0
expect_eq "carried metadata" "$(gx user.metadata "$I/src.png")" '{"from":"local"}'
expect_eq "carried creator" "$(gx user.creator "$I/src.png")" cp-a
cmp "$E2E_T/src.png" "$I/src.png" || fail "cp -a bytes"
os_mode=$(stat -c %a "$I/src.png")
emu_stats_reset
python3 -c "import os; os.chmod('$I/src.png', 0o600)" || fail "chmod is accepted"
expect_eq "mode after chmod (ignored)" "$(stat -c %a "$I/src.png")" "$os_mode"
python3 -c "import os; os.utime('$I/src.png', (1, 1))" || fail "utime of a stored image"
expect_eq "mtime after utime" "$(stat -c %Y "$I/src.png")" 1
expect_eq "one PATCH for utime, none for chmod" "$(emu_op images.edit)" 1
expect_eq "metadata kept by utime" "$(gx user.metadata "$I/src.png")" '{"from":"local"}'

umount_fs "$M"
echo PASS

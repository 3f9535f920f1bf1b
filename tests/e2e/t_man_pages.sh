#!/usr/bin/env bash
# The man pages: mount.imagesfs(8) documents exactly the options `mount.imagesfs --help`
# lists (and README's option table and fs/main.c's option table hold), imagesfs(1) exactly the verbs of
# `imagesfs --help`; both render with man(1) and groff without a warning, carry the
# program's version, and `cmake --install` puts them in share/man/man8 and man1.
# A mismatch names the option or verb and the side that lacks it (tests/e2e/man_check.py).
# Needs no mount, so it does not source lib.sh.
set -u
: "${IMAGESFS_BIN:?IMAGESFS_BIN must point to the bin directory of a build}"
: "${IMAGESFS_SRC:?IMAGESFS_SRC must point to the source tree}"

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/imagesfs-man.XXXXXX")
trap 'rm -rf "$T"' EXIT
MAN8=$IMAGESFS_SRC/man/mount.imagesfs.8
MAN1=$IMAGESFS_SRC/man/imagesfs.1
CHECK=$IMAGESFS_SRC/tests/e2e/man_check.py
status=0

echo "--- options: --help vs mount.imagesfs(8) vs README vs the option table in fs/"
"$IMAGESFS_BIN/mount.imagesfs" --help >"$T/help8" || fail "mount.imagesfs --help exited non-zero"
python3 "$CHECK" options "$T/help8" "$MAN8" "$IMAGESFS_SRC/README.md" "$IMAGESFS_SRC"/fs/*.c ||
	status=1

echo "--- verbs: imagesfs --help vs imagesfs(1)"
"$IMAGESFS_BIN/imagesfs" --help >"$T/help1" || fail "imagesfs --help exited non-zero"
python3 "$CHECK" verbs "$T/help1" "$MAN1" || status=1

echo "--- rendering without warnings"
for page in "$MAN8" "$MAN1"; do
	groff -man -ww -z "$page" 2>"$T/groff.err"
	[[ -s $T/groff.err ]] && { cat "$T/groff.err"; echo "MISMATCH: groff warns about $page"; status=1; }
	MANWIDTH=80 man -l --warnings "$page" 2>"$T/man.err" >"$T/man.out"
	[[ -s $T/man.err ]] && { cat "$T/man.err"; echo "MISMATCH: man -l warns about $page"; status=1; }
	grep -q NAME "$T/man.out" || { echo "MISMATCH: man -l rendered nothing for $page"; status=1; }
done

echo "--- versions in .TH match the programs"
v8=$("$IMAGESFS_BIN/mount.imagesfs" --version | awk '{print $2}')
v1=$("$IMAGESFS_BIN/imagesfs" --version | awk '{print $2}')
grep -q "^\.TH .*\"imagesfs $v8\"" "$MAN8" || { echo "MISMATCH: .TH of $MAN8 does not say imagesfs $v8"; status=1; }
grep -q "^\.TH .*\"imagesfs $v1\"" "$MAN1" || { echo "MISMATCH: .TH of $MAN1 does not say imagesfs $v1"; status=1; }

echo "--- cmake --install puts the pages in share/man"
BUILD=$(cd "$IMAGESFS_BIN/.." && pwd)
DESTDIR=$T/root cmake --install "$BUILD" --prefix /usr >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "cmake --install failed"; }
cmp -s "$T/root/usr/share/man/man8/mount.imagesfs.8" "$MAN8" || { echo "MISMATCH: man8 page not installed"; status=1; }
cmp -s "$T/root/usr/share/man/man1/imagesfs.1" "$MAN1" || { echo "MISMATCH: man1 page not installed"; status=1; }

[[ $status -eq 0 ]] || fail "the man pages fail the checks above (MISMATCH lines)"
echo "PASS"

#!/usr/bin/env bash
# The Debian package: scripts/package builds imagesfs_<version>_<arch>.deb from this build's
# binaries (lintian: no errors), `apt-get install ./imagesfs_*.deb` installs it with its
# Depends, and `mount -t imagesfs ACCOUNT DIR -o credentials=FILE,...` then runs the
# installed /sbin/mount.imagesfs against the emulator: cp in, cat back byte-exact, umount.
# The man pages are found by man(1). The package is removed at the end, also when a step
# fails (EXIT trap), and files it would overwrite are put back.
#
# Skips (77): not root, no apt-get/dpkg, a sanitizer build (packages are made from normal
# builds: the normal suite runs this test, the ASan suite skips it), or a package named
# imagesfs already installed (the test would replace and remove it).
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $(id -u) -eq 0 ]] || { echo "SKIP: installing a package needs root"; exit 77; }
for tool in apt-get dpkg dpkg-deb dpkg-shlibdeps; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool is unavailable"; exit 77; }
done
BUILD=$(cd "$IMAGESFS_BIN/.." && pwd)
if grep -Eq '^IMAGESFS_(SANITIZE|TSAN):BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "SKIP: $BUILD is a sanitizer build; the package is built and installed by the normal suite"
	exit 77
fi
if dpkg-query -W -f='${Status}' imagesfs 2>/dev/null | grep -q 'ok installed'; then
	echo "SKIP: a package imagesfs is already installed; remove it (dpkg -r imagesfs) to run this test"
	exit 77
fi

M=$E2E_T/mnt
INSTALLED=0
BACKUP=$E2E_T/backup
mkdir -p "$M" "$BACKUP"
APT=(apt-get -o DPkg::Lock::Timeout=120 -y -q)

pkg_cleanup() {
	mountpoint -q "$M" 2>/dev/null && { umount "$M" 2>/dev/null || fusermount3 -uz "$M"; }
	if ((INSTALLED)); then
		DEBIAN_FRONTEND=noninteractive "${APT[@]}" remove imagesfs >"$E2E_T/remove.log" 2>&1 ||
			dpkg -r imagesfs >>"$E2E_T/remove.log" 2>&1 || cat "$E2E_T/remove.log" >&2
	fi
	local f
	for f in sbin/mount.imagesfs usr/bin/imagesfs; do
		[[ -e $BACKUP/$f ]] && cp -a "$BACKUP/$f" "/$f"
	done
	return 0
}
# shellcheck disable=SC2154 # rc is assigned inside the trap string
trap 'rc=$?; pkg_cleanup; (exit $rc); e2e_cleanup' EXIT

# Files of the package that exist outside any package (e.g. from `cmake --install`) are
# overwritten by dpkg and deleted by its removal: keep a copy to put back.
for f in sbin/mount.imagesfs usr/bin/imagesfs; do
	[[ -e /$f ]] && { mkdir -p "$BACKUP/$(dirname "$f")"; cp -a "/$f" "$BACKUP/$f"; }
done

log "scripts/package from $BUILD"
"$IMAGESFS_SRC/scripts/package" --build-dir "$BUILD" --out "$E2E_T/pkg" >"$E2E_T/package.log" 2>&1 ||
	{ cat "$E2E_T/package.log" >&2; fail "scripts/package failed"; }
grep -E '^(E|W|I): ' "$E2E_T/package.log" || true
DEB=$(tail -n 1 "$E2E_T/package.log")
[[ -f $DEB && $(basename "$DEB") =~ ^imagesfs_[0-9][0-9.]*_[a-z0-9]+\.deb$ ]] ||
	fail "no imagesfs_<version>_<arch>.deb: '$DEB'"

log "contents and Depends"
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$E2E_T/files"
for f in /sbin/mount.imagesfs /usr/bin/imagesfs /usr/share/man/man8/mount.imagesfs.8.gz \
	/usr/share/man/man1/imagesfs.1.gz /usr/share/doc/imagesfs/copyright \
	/usr/share/doc/imagesfs/changelog.gz /usr/share/doc/imagesfs/README.md.gz \
	/usr/share/doc/imagesfs/SEMANTICS.md.gz; do
	grep -qx "$f" "$E2E_T/files" || fail "$f is not in the package"
done
grep -q emulator "$E2E_T/files" && fail "the emulator is in the package"
deps=$(dpkg-deb -f "$DEB" Depends)
for d in fuse3 libfuse3-3 libcurl4 libjson-c5 libc6; do
	grep -Eq "(^|, )$d( |,|$)" <<<"$deps" || fail "Depends lacks $d: $deps"
done

log "apt-get install $(basename "$DEB")"
INSTALLED=1
DEBIAN_FRONTEND=noninteractive "${APT[@]}" install "$DEB" >"$E2E_T/install.log" 2>&1 ||
	{ cat "$E2E_T/install.log" >&2; fail "apt-get install failed"; }
dpkg-query -W -f='${Status}' imagesfs | grep -q 'ok installed' || fail "imagesfs not installed"
[[ -x /sbin/mount.imagesfs && -x /usr/bin/imagesfs ]] || fail "installed binaries missing"
if [[ ! -e /usr/share/man/man8/mount.imagesfs.8.gz ]] &&
	grep -qs '^path-exclude=*/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
	log "dpkg here excludes /usr/share/man (path-exclude); not checking man(1)"
else
	[[ $(man -w mount.imagesfs) == /usr/share/man/man8/mount.imagesfs.8.gz ]] ||
		fail "man -w mount.imagesfs: $(man -w mount.imagesfs 2>&1)"
	MANWIDTH=80 man imagesfs 2>&1 | grep -q "inspect and steer" || fail "man imagesfs does not render"
fi

log "mount -t imagesfs with the installed helper and a 0600 credentials file"
emu_start
printf 'token=%s\n' "$IMAGESFS_EMULATOR_TOKEN" >"$E2E_T/cred"
chmod 600 "$E2E_T/cred"
timeout 30 mount -t imagesfs -o "api_url=$EMU_URL,cache_dir=$E2E_T/cache,credentials=$E2E_T/cred" \
	"$ACCOUNT" "$M" || fail "mount -t imagesfs failed"
mountpoint -q "$M" || fail "not mounted"
expect_eq "findmnt" "$(findmnt -n -o FSTYPE,SOURCE "$M")" "fuse.imagesfs imagesfs:$ACCOUNT"
daemon=""
for pid in $(pgrep -x mount.imagesfs); do
	grep -qF "$M" "/proc/$pid/cmdline" 2>/dev/null && daemon=$pid
done
[[ -n $daemon ]] || fail "no mount.imagesfs process serves $M"
[[ $(readlink "/proc/$daemon/exe") -ef /sbin/mount.imagesfs ]] ||
	fail "the daemon of $M runs '$(readlink "/proc/$daemon/exe")', not /sbin/mount.imagesfs"
tr '\0' ' ' <"/proc/$daemon/cmdline" | grep -qF "${IMAGESFS_EMULATOR_TOKEN#test-}" &&
	fail "the token is in the daemon's argv"

log "cp / cat round trip"
make_png "$E2E_T/a.png" 32 32 7
emu_stats_reset
cp "$E2E_T/a.png" "$M/images/pkg-a.png" || fail "cp into the mount"
expect_eq "uploads" "$(emu_op images.upload)" 1
cat "$M/images/pkg-a.png" >"$E2E_T/back.png" || fail "cat from the mount"
cmp "$E2E_T/a.png" "$E2E_T/back.png" || fail "bytes read back differ"
/usr/bin/imagesfs --version | grep -q '^imagesfs ' || fail "imagesfs --version"

log "umount, then apt-get remove"
umount "$M" || fail "umount"
for _ in $(seq 50); do mountpoint -q "$M" || break; sleep 0.1; done
mountpoint -q "$M" && fail "still mounted after umount"
DEBIAN_FRONTEND=noninteractive "${APT[@]}" remove imagesfs >"$E2E_T/remove.log" 2>&1 ||
	{ cat "$E2E_T/remove.log" >&2; fail "apt-get remove failed"; }
INSTALLED=0
[[ -e /sbin/mount.imagesfs && ! -e $BACKUP/sbin/mount.imagesfs ]] && fail "/sbin/mount.imagesfs left behind"
dpkg-query -W -f='${Status}' imagesfs 2>/dev/null | grep -q 'ok installed' && fail "still installed"
echo "PASS"

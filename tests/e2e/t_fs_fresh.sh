#!/usr/bin/env bash
# Freshness of every operation, not only ls: two mounts of one account with dir_ttl=2. A
# metadata change, a replaced image, a delete and a rename made on A are seen on B by
# getfattr, cat and stat within 3 s without anything listing the directory; a deleted image
# gives ENOENT, not its cached bytes; df -i is not older than dir_ttl. Re-checks cost one
# listing, never a request per file: ls -l and a stat of every image within dir_ttl cost
# nothing, and a stat of every image after dir_ttl costs one listing; on an account of
# more than one page, one GET per name while GETs cost less than a listing.
# shellcheck disable=SC2119 # emu_start takes no arguments here
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start
A=$E2E_T/mntA B=$E2E_T/mntB
mount_fs "$A" "dir_ttl=2"
mount_fs "$B" "dir_ttl=2,cache_dir=$E2E_T/cacheB"
gx() { getfattr --absolute-names --only-values -n "$1" "$2" 2>/dev/null; }
now() { date +%s%N; }
readdirs() { # readdir + readdirplus requests B's daemon has served
	getfattr --absolute-names --only-values -n user.imagesfs.ops "$B" |
		awk '/^readdir/ { n += $2 } END { print n + 0 }'
}
# within WHAT CMD...: CMD must succeed within 3 s of the change (CHANGED, else now; polls
# every 0.1 s); prints the time.
CHANGED=""
within() {
	local what=$1 t0=${CHANGED:-$(now)} t
	shift
	CHANGED=""
	while :; do
		"$@" && break
		t=$(($(now) - t0))
		((t < 3000000000)) || fail "$what: not seen on B within 3 s"
		sleep 0.1
	done
	echo "$what: seen on B after $((($(now) - t0) / 1000000)) ms"
}

for n in a b c d; do make_png "$E2E_T/$n.png" 12 12 "$(printf '%d' "'$n")"; done
make_png "$E2E_T/b2.png" 20 20 99
for n in a b c d; do cp "$E2E_T/$n.png" "$A/images/$n.png" || fail "cp $n"; done
ls "$B/images" >/dev/null # B knows the names; nothing lists after this
for n in a b c d; do cmp -s "$E2E_T/$n.png" "$B/images/$n.png" || fail "B reads $n"; done
expect_eq "metadata before" "$(gx user.metadata "$B/images/a.png")" ""
used0=$(df --output=iused "$B" | tail -1 | tr -d ' ')
rd0=$(readdirs)

log "metadata set on A"
setfattr -n user.metadata -v '{"k":"v1"}' "$A/images/a.png" || fail "setfattr on A"
meta_is() { [[ $(gx user.metadata "$B/images/a.png") == '{"k":"v1"}' ]]; }
within "metadata" meta_is

log "bytes replaced on A"
cp "$E2E_T/b2.png" "$A/images/b.png" || fail "replace on A"
bytes_are() { cmp -s "$E2E_T/b2.png" "$B/images/b.png"; }
within "replaced bytes (cat)" bytes_are

log "replaced on A just after B listed; B's first stat comes late in that listing's life"
make_png "$E2E_T/b3.png" 24 24 98
sleep 2.1 # whatever the kernel cached of b.png expires
echo images >"$B/.imagesfs/refresh"
gx user.state "$B/images/a.png" >/dev/null # B lists again now (getxattr always reaches it)
t_list=$(now)
cp "$E2E_T/b3.png" "$A/images/b.png" || fail "replace on A"
CHANGED=$(now)
# B answers stat from a listing that predates the change: the kernel must not keep that
# answer past the listing's dir_ttl
while (($(now) - t_list < 1700000000)); do sleep 0.05; done
# sizes are unknown until an image is opened; the upload time (mtime) is in the listing
mtime_a=$(stat -c %y "$A/images/b.png")
mtime_is() { [[ $(stat -c %y "$B/images/b.png") == "$mtime_a" ]]; }
within "replaced image's mtime (stat)" mtime_is

log "image deleted on A"
df "$B" >/dev/null # statfs's stats are fresh now: they must not outlive dir_ttl
rm "$A/images/c.png" || fail "rm on A"
t_rm=$(now)
CHANGED=$t_rm
cat_enoent() { ! cat "$B/images/c.png" >/dev/null 2>&1; }
within "delete (cat)" cat_enoent
expect_errno ENOENT "open('$B/images/c.png','rb')"
expect_errno ENOENT "os.stat('$B/images/c.png')"
used_is() { [[ $(df --output=iused "$B" | tail -1 | tr -d ' ') == $((used0 - 1)) ]]; }
CHANGED=$t_rm
within "delete (df -i)" used_is # since the rm: within 3 s with dir_ttl=2, not 5

log "image renamed on A"
mv "$A/images/d.png" "$A/images/e.png" || fail "mv on A"
renamed() { ! stat "$B/images/d.png" >/dev/null 2>&1 && cmp -s "$E2E_T/d.png" "$B/images/e.png"; }
within "rename (stat, cat)" renamed
expect_eq "B listed nothing meanwhile" "$(readdirs)" "$rd0"

log "request cost: a listing, never a request per file"
C=$E2E_T/mntC
mount_fs "$C" "dir_ttl=60,cache_dir=$E2E_T/cacheC"
emu_seed 300 s-
emu_stats_reset
ls -l "$C/images" >/dev/null || fail "ls -l"
expect_eq "requests of ls -l (one listing)" "$(emu_total)" 1
for f in "$C"/images/s-*; do stat "$f" >/dev/null && gx user.state "$f" >/dev/null; done
expect_eq "requests of stat + getfattr of 300 images within dir_ttl" "$(emu_total)" 1
umount_fs "$C"
echo images >"$B/.imagesfs/refresh"
ls "$B/images" >/dev/null # B knows the 300 names
sleep 2.1
emu_stats_reset
t0=$(now)
for i in $(seq 0 299); do stat "$B/images/$(printf s-%06d "$i")" >/dev/null; done # no readdir
# one listing per dir_ttl (2 s) the loop took, never one request per image
most=$((1 + ($(now) - t0) / 2000000000))
got=$(emu_total)
((got >= 1 && got <= most)) ||
	fail "requests of stat of 300 images after dir_ttl: $got (expected 1..$most): $(curl -fsS "$EMU_ADMIN/stats")"
echo "stat of 300 images after dir_ttl: $got request(s)"

log "an account of more than one page: one GET per name while that is cheaper, then a listing"
emu_seed 10000 g- 80
echo images >"$B/.imagesfs/refresh"
ls "$B/images" >/dev/null # 2 pages
sleep 2.1
emu_stats_reset
S=$B/images/s-000000
{ stat "$S" && stat "$S" && gx user.state "$S"; } >/dev/null || fail "stat $S"
expect_eq "requests of stat, stat, getfattr of one image (one GET)" "$(emu_total)" 1
expect_eq "GETs" "$(emu_op images.get)" 1
stat "$B/images/s-000001" >/dev/null || fail "stat s-000001"
expect_eq "list requests for a second name (GETs would now cost as much)" \
	"$(emu_op images.list_v2)" 2
for i in $(seq 2 20); do stat "$B/images/$(printf s-%06d "$i")" >/dev/null; done
expect_eq "requests after that listing" "$(emu_total)" 3

umount_fs "$B"
umount_fs "$A"
echo "PASS"

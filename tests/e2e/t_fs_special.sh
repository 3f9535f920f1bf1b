#!/usr/bin/env bash
# variants/, keys/, stats and statfs (df -i).
# shellcheck disable=SC2009,SC2010,SC2012,SC2015,SC2119 # ls is under test; `a && b || fail` is intended
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

emu_start --allowed 500
emu_seed 7
M=$E2E_T/mnt
mount_fs "$M"
V=$M/variants K=$M/keys
auth=(-H "Authorization: Bearer $IMAGESFS_EMULATOR_TOKEN")
api() { curl -fsS "${auth[@]}" "$EMU_URL/accounts/$ACCOUNT/images/v1/$1"; }

log "variants: cat shows a document"
ls "$V" | grep -qx public || fail "public variant missing"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "options" in d, d' "$V/public" ||
	fail "public is not a variant document: $(cat "$V/public")"

log "variants: write a new one, edit it, copy it, remove it"
printf '{"options":{"fit":"cover","metadata":"none","width":320,"height":200}}\n' >"$V/thumb" ||
	fail "create thumb"
api variants/thumb | grep -q '"width":320' || fail "thumb not created in the API"
grep -q '"width":320' "$V/thumb" || fail "thumb content: $(cat "$V/thumb")"
printf '{"options":{"fit":"cover","metadata":"none","width":640,"height":400},"neverRequireSignedURLs":true}' \
	>"$V/thumb" || fail "edit thumb"
api variants/thumb | grep -q '"width":640' || fail "thumb not edited in the API"
grep -q '"neverRequireSignedURLs":true' "$V/thumb" || fail "edited content: $(cat "$V/thumb")"
cp "$V/thumb" "$V/thumb2" || fail "cp variant"
cmp "$V/thumb" "$V/thumb2" || fail "copied variant differs"
api variants/thumb2 | grep -q '"width":640' || fail "thumb2 not in the API"
rm "$V/thumb2" || fail "rm variant"
api variants/thumb2 >/dev/null 2>&1 && fail "thumb2 still in the API"
[[ -e $V/thumb2 ]] && fail "thumb2 still listed"

log "variants: refusals"
emu_stats_reset
expect_errno EPERM "os.unlink('$V/public')"
expect_eq "no API call for rm public" "$(emu_op variants.delete)" 0
grep -q "cannot remove 'variants/public'" "${FS_LOG[$M]}" || fail "no log line for public"
expect_errno EINVAL "
fd = os.open('$V/broken', os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644)
os.write(fd, b'{not json')
os.close(fd)"
[[ -e $V/broken ]] && fail "a broken variant remains"
expect_errno EINVAL "
fd = os.open('$V/thumb', os.O_WRONLY|os.O_TRUNC)
os.write(fd, b'{\"options\":{\"fit\":\"cover\"},\"bogus\":1}')
os.close(fd)"
api variants/thumb | grep -q '"width":640' || fail "thumb changed by a refused edit"
expect_errno EINVAL "open('$V/bad-name!', 'w')"
expect_errno EPERM "os.open('$V/thumb', os.O_WRONLY)"
expect_errno EFBIG "
fd = os.open('$V/huge', os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644)
try:
    os.write(fd, b' ' * (64*1024 + 1))
finally:
    try: os.close(fd)
    except OSError: pass"

log "keys: cat, mode 0600, touch creates, rm deletes, the last rm regenerates default"
expect_eq "key mode" "$(stat -c %a "$K/default")" 600
val=$(cat "$K/default")
[[ -n $val ]] || fail "empty key"
api keys | grep -q "\"value\":\"$val\"" || fail "key value differs from the API"
touch "$K/extra" || fail "touch keys/extra"
api keys | grep -q '"name":"extra"' || fail "extra not created in the API"
[[ -s $K/extra ]] || fail "extra has no value"
expect_errno EPERM "os.open('$K/extra', os.O_WRONLY|os.O_TRUNC)"
expect_errno EINVAL "open('$K/no-dashes', 'w')"
expect_errno EPERM "os.rename('$K/extra', '$K/other')"
rm "$K/extra" || fail "rm extra"
api keys | grep -q '"name":"extra"' && fail "extra still in the API"
rm "$K/default" || fail "rm default"
expect_eq "regenerated keys" "$(ls "$K")" default
new=$(cat "$K/default")
[[ -n $new && $new != "$val" ]] || fail "default not regenerated ($new)"
grep -qF "$new" "${FS_LOG[$M]}" && fail "a key value appears in the log"
grep -qF "$val" "${FS_LOG[$M]}" && fail "a key value appears in the log"
grep -q "cannot write 'variants/thumb'" "${FS_LOG[$M]}" && [[ $(grep -c "cannot write 'variants/thumb'" "${FS_LOG[$M]}") -ne 1 ]] &&
	fail "spurious variant errors: $(grep "variants/thumb" "${FS_LOG[$M]}")"

log "stats and df -i"
expect_eq "stats" "$(cat "$M/stats")" '{"count":{"allowed":500,"current":7}}'
expect_eq "stats mode" "$(stat -c %a "$M/stats")" 444
expect_errno EACCES "os.open('$M/stats', os.O_WRONLY)"
read -r files ifree < <(df -i "$M" | awk 'NR == 2 { print $2, $4 }')
expect_eq "df -i inodes" "$files" 500
expect_eq "df -i free" "$ifree" 493
df -h "$M" >/dev/null || fail "df"

umount_fs "$M"
echo PASS

#!/usr/bin/env bash
# Secrets and permissions: the token and the auth key never appear in `ps`, in the -f -d log
# (libfuse debug + libcurl trace) or in error messages, for both Bearer and X-Auth-Key auth;
# signing-key values read through keys/ never reach the log; secret-looking options are
# refused in every spelling; keys/ files are 0600 and, with allow_other, another user can
# read images/ but not keys/ (default_permissions); the cache is private (0700/0600).
# TLS: an https api_url whose certificate is not trusted is refused (fast, nothing
# mounted, in every option spelling that might turn checking off), and -o ca_file=CERT gets
# past TLS. (Credentials-file modes and the basic refusal are in t_fs_mount.sh.)
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

AUTH_EMAIL=rel@example.com
AUTH_KEY="authkey-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
IMAGESFS_EMULATOR_AUTH_KEY="$AUTH_EMAIL:$AUTH_KEY" emu_start
emu_seed 3
chmod 711 "$E2E_T" # another user must reach the mount point (nothing else is readable)
M=$E2E_T/mnt
KEY_M=$E2E_T/mntk

# no_secret WHAT FILE SECRET...: none of the secrets occurs in FILE.
no_secret() {
	local what=$1 file=$2 s
	shift 2
	for s in "$@"; do
		grep -qF -- "$s" "$file" && fail "$what contains a secret ($(grep -cF -- "$s" "$file") lines)"
	done
	return 0
}

log "Bearer token: -f -d mount, keys, uploads, listing, failures; nothing secret in the log or ps"
mount_fs "$M" "-d,allow_other"
touch "$M/keys/relkey" || fail "creating a key"
mapfile -t keyvals < <(for k in "$M"/keys/*; do cat "$k"; done)
((${#keyvals[@]} >= 2)) || fail "expected at least 2 keys, got ${#keyvals[@]}"
for v in "${keyvals[@]}"; do [[ ${#v} -ge 20 ]] || fail "key value '$v' too short to be real"; done
make_png "$E2E_T/p.png"
cp "$E2E_T/p.png" "$M/images/up.png" || fail "upload"
cat "$M/images/seed-000000" >/dev/null
ls -l "$M/images" "$M/variants" >/dev/null
cat "$M/stats" >/dev/null
printf 'not an image' >"$E2E_T/bad.txt"
cp "$E2E_T/bad.txt" "$M/images/bad.png" 2>/dev/null && fail "a text file was uploaded"
ps -eo args >"$E2E_T/ps.out"
grep -q "mount.imagesfs $ACCOUNT $M" "$E2E_T/ps.out" || fail "ps does not show the mount"
no_secret "ps output" "$E2E_T/ps.out" "$IMAGESFS_EMULATOR_TOKEN" "${keyvals[@]}"
tr '\0' '\n' <"/proc/${FS_PID[$M]}/cmdline" >"$E2E_T/cmdline"
no_secret "the daemon's argv" "$E2E_T/cmdline" "$IMAGESFS_EMULATOR_TOKEN"

log "keys/ is 0600 and private with allow_other; images/ stays readable"
for k in "$M"/keys/*; do
	expect_eq "mode of $k" "$(stat -c %a "$k")" 600
done
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
nobody ls "$M/images" >/dev/null || fail "another user cannot list images/ with allow_other"
nobody cat "$M/images/seed-000000" >/dev/null || fail "another user cannot read an image"
nobody cat "$M/keys/default" >/dev/null 2>&1 && fail "another user can read keys/default"
nobody cat "$M/keys/relkey" >/dev/null 2>&1 && fail "another user can read keys/relkey"
nobody sh -c "echo x >'$M/images/intruder.png'" 2>/dev/null && fail "another user can create images"
nobody rm -f "$M/images/up.png" 2>/dev/null || true
[[ -e $M/images/up.png ]] || fail "another user deleted an image"
expect_eq "cache dir mode" "$(stat -c %a "$E2E_T/cache")" 700
bad=$(find "$E2E_T/cache" -type f -perm /077 | head -n 3)
[[ -z $bad ]] || fail "cache files readable by others: $bad"
bad=$(find "$E2E_T/cache" -type d -perm /077 | head -n 3)
[[ -z $bad ]] || fail "cache directories open to others: $bad"
rm "$M/keys/relkey" || fail "deleting the key"
umount_fs "$M"
no_secret "the -d log" "${FS_LOG[$M]}" "$IMAGESFS_EMULATOR_TOKEN" "${keyvals[@]}"
grep -q 'Authorization: \[redacted\]' "${FS_LOG[$M]}" ||
	fail "the -d log has no redacted Authorization line: the trace check is blind"
grep -q 'unique:' "${FS_LOG[$M]}" || log "(no libfuse debug lines in the log)"
log "without allow_other another user cannot even stat the mount"
mount_fs "$M"
nobody stat "$M/images" >/dev/null 2>&1 && fail "another user reached a mount without allow_other"
umount_fs "$M"

log "X-Auth-Key + email: the key never appears either"
mkdir -p "$KEY_M"
CLOUDFLARE_API_KEY=$AUTH_KEY CLOUDFLARE_EMAIL=$AUTH_EMAIL "$IMAGESFS_BIN/mount.imagesfs" \
	"$ACCOUNT" "$KEY_M" -f -o "api_url=$EMU_URL,cache_dir=$E2E_T/cachek,-d" >"$E2E_T/key.log" 2>&1 &
FS_PID[$KEY_M]=$!
FS_LOG[$KEY_M]=$E2E_T/key.log
for ((i = 0; i < 200; i++)); do
	mountpoint -q "$KEY_M" && break
	kill -0 "${FS_PID[$KEY_M]}" 2>/dev/null || fail "X-Auth-Key mount failed: $(tail -n 5 "$E2E_T/key.log")"
	sleep 0.05
done
cat "$KEY_M/keys/default" >/dev/null || fail "reading a key with X-Auth-Key auth"
cat "$KEY_M/images/seed-000001" >/dev/null || fail "reading an image with X-Auth-Key auth"
ps -eo args >"$E2E_T/ps.out"
no_secret "ps output" "$E2E_T/ps.out" "$AUTH_KEY"
umount_fs "$KEY_M"
no_secret "the -d log (X-Auth-Key)" "$E2E_T/key.log" "$AUTH_KEY"
grep -qi 'X-Auth-Key: \[redacted\]' "$E2E_T/key.log" || fail "no redacted X-Auth-Key line in the trace"
grep -qF "X-Auth-Email: $AUTH_EMAIL" "$E2E_T/key.log" || log "(the email is redacted too)"

log "failure messages never echo secrets"
# wrong_mount: a mount with the credentials in the environment (never argv) must fail.
wrong_mount() {
	timeout 20 "$IMAGESFS_BIN/mount.imagesfs" "$ACCOUNT" "$M" -f \
		-o "api_url=$EMU_URL,cache_dir=$E2E_T/cache,-d" >"$E2E_T/fail.log" 2>&1 &&
		fail "a wrong credential mounted"
	no_secret "a failed mount's output" "$E2E_T/fail.log" "$AUTH_KEY"
}
CLOUDFLARE_API_TOKEN=wrong-$AUTH_KEY wrong_mount
CLOUDFLARE_API_KEY=$AUTH_KEY-x CLOUDFLARE_EMAIL=$AUTH_EMAIL wrong_mount
mountpoint -q "$M" && fail "mounted with wrong credentials"

log "secret-looking options are refused in every spelling, the value never echoed"
for o in "-otoken=S3CR3T" "-o ro,api_token=S3CR3T" "-o auth_key=S3CR3T,ro" "-o password=S3CR3T"; do
	# shellcheck disable=SC2086 # $o is split on purpose
	CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN timeout 20 "$IMAGESFS_BIN/mount.imagesfs" \
		"$ACCOUNT" "$M" -o "api_url=$EMU_URL,cache_dir=$E2E_T/cache" $o >"$E2E_T/opt.log" 2>&1 &&
		fail "mount accepted $o"
	grep -q S3CR3T "$E2E_T/opt.log" && fail "the refused value of $o is echoed"
	grep -q "refusing option" "$E2E_T/opt.log" || fail "$o: $(cat "$E2E_T/opt.log")"
done
mountpoint -q "$M" && fail "mounted with a secret option"

log "TLS: an untrusted certificate is refused; ca_file gets past TLS"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$E2E_T/tls.key" -out "$E2E_T/tls.crt" \
	>/dev/null 2>&1 || fail "openssl req"
TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl s_server -accept "127.0.0.1:$TLS_PORT" -cert "$E2E_T/tls.crt" -key "$E2E_T/tls.key" \
	-www -quiet >/dev/null 2>&1 &
REL_KILL_PIDS+=($!)
for ((i = 0; i < 100; i++)); do
	(exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null && break
	sleep 0.05
done
TLS_URL=https://127.0.0.1:$TLS_PORT/client/v4
tls_mount() { # extra-options: daemon mode, output to tls.log; returns the helper's status
	CLOUDFLARE_API_TOKEN=$IMAGESFS_EMULATOR_TOKEN timeout 30 "$IMAGESFS_BIN/mount.imagesfs" \
		"$ACCOUNT" "$M" -o "api_url=$TLS_URL,cache_dir=$E2E_T/cache$1" >"$E2E_T/tls.log" 2>&1
}
for extra in "" ",insecure" ",ssl_verify=0" ",ca_file=/nonexistent/ca.pem" ",ca_file=/dev/null"; do
	start=$(ms_now)
	tls_mount "$extra" && fail "mounted an https server with an untrusted certificate ($extra)"
	ms=$(($(ms_now) - start))
	((ms < 15000)) || fail "TLS refusal ($extra) took $ms ms"
	mountpoint -q "$M" && fail "mounted anyway ($extra)"
	no_secret "TLS failure output" "$E2E_T/tls.log" "$IMAGESFS_EMULATOR_TOKEN"
	log "refused ($extra) in $ms ms: $(head -c 200 "$E2E_T/tls.log")"
	[[ $extra == ",insecure" || $extra == ",ssl_verify=0" ]] && continue
	grep -qiE 'certificate|SSL|TLS|CA' "$E2E_T/tls.log" || fail "the refusal does not name TLS: $(cat "$E2E_T/tls.log")"
done
tls_mount ",ca_file=$E2E_T/tls.crt" && fail "s_server is not an Images API, yet the mount succeeded"
grep -qiE 'certificate|SSL' "$E2E_T/tls.log" && fail "with ca_file the TLS check still fails: $(cat "$E2E_T/tls.log")"
grep -q "cannot access account" "$E2E_T/tls.log" || fail "unexpected: $(cat "$E2E_T/tls.log")"
log "with ca_file: past TLS, refused by the API check: $(head -c 200 "$E2E_T/tls.log")"
echo PASS

# shellcheck shell=bash
# scripts/lib/bench_bulk.sh - section 7 of scripts/bench (sourced; uses its helpers): bulk
# shellcheck disable=SC2154,SC2034 # variables and helpers of scripts/bench, which sources this
# copies under Cloudflare's real limits, the emulator enforcing the global budget
# (--rate-limit 1200/300) and the batch host's 200 requests/s per token, --latency-ms as the
# rest of the bench, the mount with its default options (batch=on, batch_tokens=2,
# rate_limit=1200/300). Each run gets a fresh emulator (a fresh global window) and mount:
#   - N small images by 8 parallel writers (xargs -P 8 cp) and by one sequential cp -r;
#   - M x 1 MB by 8 parallel writers, against 8 parallel curl -F to the batch host;
#   - the same with batch=off. Under the global limit a mount sends 120 requests, then 3.6/s,
#     so batch=off copies a smaller set and its time for N is that measurement plus
#     (N - n) / 3.6 s (the limiter's steady rate), marked "extrapolated".
# Ratio to the platform's limit: imagesfs time / the larger of N / (tokens x 200 req/s) and
# the time 8 parallel curl -F take for the same files on the batch host.

bulk_tokens=2

bulk_make() { # dir count bytes prefix: PNG-signed files (the emulator sniffs the first bytes)
	python3 - "$@" <<'PY'
import os, struct, sys, zlib
d, n, size, pre = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.makedirs(d, exist_ok=True)
sig = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
sig += struct.pack(">I", zlib.crc32(sig[12:]) & 0xffffffff)
for i in range(n):
    body = os.urandom(max(0, size - len(sig) - 16)) + b"%16d" % i
    with open(os.path.join(d, "%s%05d.png" % (pre, i)), "wb") as f:
        f.write(sig + body)
PY
}

# bulk_run NAME MOUNT-OPTS MODE SRC-DIR: fresh emulator + mount, copies SRC-DIR (MODE par or
# seq), sets bulk_t (seconds or FAIL) and bulk_h ("GLOBAL BATCH 429S TOKENS").
bulk_run() {
	local name=$1 opts=$2 mode=$3 src=$4 n per t
	bulk_t=FAIL
	bulk_h="- - - -"
	emu_start "$name" "$latency" --rate-limit 1200/300 || return 1
	fs_opts=$opts
	snap "$work/$name.s0" # before the first listing: its requests and the tokens count
	if fs_mount "$name" 60 && timeout -k 5 60 ls "$mnt/images" >/dev/null; then
		n=$(find "$src" -type f | wc -l)
		if [[ $mode == par ]]; then
			per=$(((n + par - 1) / par))
			find "$src" -type f | sort >"$work/$name.list"
			timed t 1800 xargs -d '\n' -P "$par" -n "$per" cp -t "$mnt/images/" -- \
				<"$work/$name.list" 2>"$work/$name.cp.err" && bulk_t=$t
		else
			timed t 1800 cp -r "$src/." "$mnt/images/" 2>"$work/$name.cp.err" && bulk_t=$t
		fi
		snap "$work/$name.s1"
		bulk_h=$(python3 "$util" hosts "$work/$name.s0" "$work/$name.s1")
		[[ $bulk_t == FAIL ]] && log "$name: cp failed: $(head -c 300 "$work/$name.cp.err")"
		local stored
		stored=$(admin GET health | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])')
		[[ $stored == "$n" ]] || { log "$name: $stored images stored, expected $n"; bulk_t=FAIL; }
	fi
	fs_umount
	fs_opts=rate_limit=off,batch=off
	emu_stop
}

# bulk_curl NAME SRC-DIR: 8 parallel curl -F of SRC-DIR to the batch host of a fresh
# emulator, bulk_tokens tokens shared round robin; sets bulk_c (seconds or FAIL).
bulk_curl() {
	local name=$1 src=$2 i n per f files=() t
	bulk_c=FAIL
	emu_start "$name" "$latency" --rate-limit 1200/300 || return 1
	for ((i = 0; i < bulk_tokens; i++)); do
		curl -sS -K "$work/auth.curlrc" "$emu_base/accounts/$account/images/v1/batch_token" |
			python3 -c 'import json,sys; print("header = \"Authorization: Bearer %s\"" % json.load(sys.stdin)["result"]["token"])' \
				>"$work/$name.tok$i.curlrc" || { emu_stop; return 1; }
	done
	mapfile -t files < <(find "$src" -type f | sort)
	n=${#files[@]}
	per=$(((n + par - 1) / par))
	: >"$work/$name.curl.list"
	for ((i = 0; i < par; i++)); do
		for f in "${files[@]:i*per:per}"; do
			[[ $f == "${files[i * per]}" ]] || echo next
			cat "$work/$name.tok$((i % bulk_tokens)).curlrc"
			printf 'silent\nshow-error\noutput = "/dev/null"\nwrite-out = "%%{http_code} %%{size_download}\\n"\n'
			printf 'url = "%s/images/v1"\nform = "file=@%s"\nform = "id=c-%s"\n' "$emu_origin" "$f" "${f##*/}"
		done >"$work/$name.curl.$i"
		echo "$work/$name.curl.$i" >>"$work/$name.curl.list"
	done
	par_curl t "$work/$name.curl.list" "$work/$name.curl.codes" 2>"$work/$name.curl.err" &&
		count_ok "$work/$name.curl.codes" "$n" && bulk_c=$t
	[[ $bulk_c == FAIL ]] && log "$name: curl: $(cut -d' ' -f1 "$work/$name.curl.codes" | sort | uniq -c | tr '\n' ' ')"
	emu_stop
}

bulk_hosts() { # "G B E T" -> "G global (T tokens) + B batch, E 429s"
	read -r g b e tk <<<"$1"
	printf '%s global (%s tokens) + %s batch requests, %s 429s' "$g" "$tk" "$b" "$e"
}

bench_bulk() {
	local n=2000 m=200 noff=240 t_par t_seq t_big h_par h_seq h_big t_off t_off_n h_off
	local t_bigoff h_bigoff c_small c_big lim best sp
	((quick)) && n=400 m=48 noff=160
	log "bulk: making $n small and $m x 1 MB images"
	bulk_make "$work/bulk-small" "$n" 120 s
	bulk_make "$work/bulk-off" "$noff" 120 o
	bulk_make "$work/bulk-big" "$m" $((1024 * 1024)) b

	log "bulk: $n small, $par parallel, defaults"
	bulk_run bulk-par "" par "$work/bulk-small"
	t_par=$bulk_t h_par=$bulk_h
	log "bulk: $n small, sequential cp -r, defaults"
	bulk_run bulk-seq "" seq "$work/bulk-small"
	t_seq=$bulk_t h_seq=$bulk_h
	log "bulk: $m x 1 MB, $par parallel, defaults"
	bulk_run bulk-big "" par "$work/bulk-big"
	t_big=$bulk_t h_big=$bulk_h
	log "bulk: curl -F baselines on the batch host"
	bulk_curl bulk-curl-small "$work/bulk-small"
	c_small=$bulk_c
	bulk_curl bulk-curl-big "$work/bulk-big"
	c_big=$bulk_c
	log "bulk: batch=off, $noff small, $par parallel"
	bulk_run bulk-off batch=off par "$work/bulk-off"
	t_off_n=$bulk_t h_off=$bulk_h
	log "bulk: batch=off, $m x 1 MB, $par parallel"
	bulk_run bulk-bigoff batch=off par "$work/bulk-big"
	t_bigoff=$bulk_t h_bigoff=$bulk_h

	lim=$(fcalc 'sprintf("%.3f", n / (k * 200))' n="$n" k="$bulk_tokens")
	best=$lim
	isnum "$c_small" && [[ $(fcalc 'c > l' c="$c_small" l="$lim") == 1 ]] && best=$c_small
	if isnum "$t_par"; then
		row 7 "$n small, $par parallel cp (defaults, real limits)" "$(secs "$t_par"), $(bulk_hosts "$h_par")" \
			"limit $n/(${bulk_tokens}x200/s): $(secs "$lim"); curl -F x$par: $(isnum "$c_small" && secs "$c_small" || echo FAILED)" \
			"$(ratio "$t_par" "$best")" "<= 1.3x" "$(judge "$(ratio "$t_par" "$best")" '<=' 1.3)"
	else
		fail_row 7 "$n small, $par parallel cp" "cp failed or images missing"
	fi
	if isnum "$t_seq"; then
		row 7 "$n small, sequential cp -r (defaults)" "$(secs "$t_seq"), $(bulk_hosts "$h_seq")" \
			"limit: $(secs "$lim")" "$(ratio "$t_seq" "$lim")" "-" "-"
	else
		fail_row 7 "$n small, sequential cp -r" "cp failed or images missing"
	fi
	if isnum "$t_off_n"; then
		t_off=$(fcalc 'sprintf("%.1f", t + (n - k) / 3.6)' t="$t_off_n" n="$n" k="$noff")
		sp=$(ratio "$t_off" "$t_par")
		row 7 "  same with batch=off" "$(secs "$t_off_n") for $noff ($(bulk_hosts "$h_off")); $n: ~$t_off s extrapolated" \
			"" "batch on ${sp%x}x faster" ">= 20x" "$(judge "$sp" '>=' 20)"
	else
		fail_row 7 "  same with batch=off" "cp failed or images missing"
	fi
	if isnum "$t_big"; then
		row 7 "$m x 1 MB, $par parallel cp (defaults)" \
			"$(mbps $((m * 1024 * 1024)) "$t_big"), $(bulk_hosts "$h_big")" \
			"curl -F x$par: $(isnum "$c_big" && mbps $((m * 1024 * 1024)) "$c_big" || echo FAILED)" \
			"$(ratio "$t_big" "$c_big")" "<= 1.2x" "$(judge "$(ratio "$t_big" "$c_big")" '<=' 1.2)"
	else
		fail_row 7 "$m x 1 MB, $par parallel cp" "cp failed or images missing"
	fi
	if isnum "$t_bigoff"; then
		row 7 "  same with batch=off" "$(mbps $((m * 1024 * 1024)) "$t_bigoff"), $(bulk_hosts "$h_bigoff")" \
			"" "$(ratio "$t_bigoff" "$t_big")" "-" "-"
	else
		fail_row 7 "  same with batch=off (1 MB)" "cp failed or images missing"
	fi
}

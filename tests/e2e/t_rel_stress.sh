#!/usr/bin/env bash
# Concurrency stress: for a bounded time, 8 processes at once copy images in, read them back,
# read seeded images, list (images, keys, variants, stats, statfs), set and read attributes,
# rename and delete. Every single operation must succeed with the right bytes/values;
# afterwards the daemon exits 0 at unmount (under the ASan build: no leak, no error), its log
# holds no sanitizer report, the cache is byte-exact and the server holds exactly the
# images the workers left. The suite runs this under ASan+UBSan (build-asan).
# shellcheck disable=SC2010,SC2119 # ls is under test; helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

DURATION=${REL_STRESS_SECONDS:-25}
emu_start
emu_seed 20 s- 3000
M=$E2E_T/mnt
mount_fs "$M" "dir_ttl=1"
mkdir -p "$E2E_T/src" "$E2E_T/want"
for i in $(seq 0 19); do
	printf -v f 's-%06d' "$i"
	api_blob "$f" "$E2E_T/want/$f" || fail "fetching $f"
done
for i in $(seq 0 7); do make_png "$E2E_T/src/p$i.png" $((20 + i * 6)) 24 "$i"; done
END=$(($(date +%s) + DURATION))
ERR=$E2E_T/errors
# err WORKER MESSAGE: records a failed operation.
err() { echo "$1: $2" >>"$ERR"; }
running() { (($(date +%s) < END)); }

uploader() { # cp in, read back, sometimes keep, else rm
	local w=$1 n=0 f src
	while running; do
		src=$E2E_T/src/p$(((n + w) % 8)).png
		f=$M/images/w$w-$n.png
		timeout 60 cp "$src" "$f" || { err "up$w" "cp $f"; continue; }
		timeout 60 cmp -s "$src" "$f" || err "up$w" "read back $f"
		if ((n % 5 == 0)); then
			echo "w$w-$n.png" >>"$E2E_T/kept.$w"
		else
			timeout 60 rm "$f" || err "up$w" "rm $f"
			[[ -e $f ]] && err "up$w" "$f still exists after rm"
		fi
		n=$((n + 1))
	done
	echo "up$w: $n" >>"$E2E_T/counts"
}
reader() {
	local w=$1 n=0 f
	while running; do
		printf -v f 's-%06d' $(((n * 7 + w) % 20))
		timeout 60 cmp -s "$E2E_T/want/$f" "$M/images/$f" || err "rd$w" "$f differs or failed"
		n=$((n + 1))
	done
	echo "rd$w: $n" >>"$E2E_T/counts"
}
lister() {
	local n=0 c
	while running; do
		c=$(timeout 60 ls -l "$M/images" | grep -c ' s-') || true
		[[ $c == 20 ]] || err ls "ls -l images shows $c seeded images"
		timeout 60 ls "$M/keys" "$M/variants" >/dev/null || err ls "ls keys variants"
		timeout 60 cat "$M/stats" >/dev/null || err ls "cat stats"
		timeout 60 df "$M" >/dev/null || err ls "statfs"
		timeout 60 find "$M/images" -name 'w*' >/dev/null || err ls "find"
		n=$((n + 1))
	done
	echo "ls: $n" >>"$E2E_T/counts"
}
attrs() { # its own images s-000010..14: set metadata and creator, read them back
	local n=0 f v
	while running; do
		printf -v f '%s/images/s-%06d' "$M" $((10 + n % 5))
		v="{\"n\":$n}"
		timeout 60 setfattr -n user.metadata -v "$v" "$f" || err attr "setfattr metadata $f"
		[[ $(timeout 60 getfattr --only-values -n user.metadata "$f" 2>/dev/null) == "$v" ]] ||
			err attr "getfattr metadata $f"
		timeout 60 setfattr -n user.creator -v "c$n" "$f" || err attr "setfattr creator $f"
		timeout 60 getfattr --absolute-names -d "$f" >/dev/null || err attr "getfattr -d $f"
		n=$((n + 1))
	done
	echo "attr: $n" >>"$E2E_T/counts"
}
renamer() { # cp, mv to a new name, check, rm
	local n=0 a b
	while running; do
		a=$M/images/mv-$n.png
		b=$M/images/moved-$n.png
		timeout 60 cp "$E2E_T/src/p3.png" "$a" || { err mv "cp $a"; continue; }
		timeout 60 mv "$a" "$b" || { err mv "mv $a $b"; continue; }
		[[ -e $a ]] && err mv "$a still exists after mv"
		timeout 60 cmp -s "$E2E_T/src/p3.png" "$b" || err mv "$b differs"
		timeout 60 rm "$b" || err mv "rm $b"
		n=$((n + 1))
	done
	echo "mv: $n" >>"$E2E_T/counts"
}

log "8 workers for $DURATION s"
pids=()
uploader 0 &
pids+=($!)
uploader 1 &
pids+=($!)
reader 0 &
pids+=($!)
reader 1 &
pids+=($!)
lister &
pids+=($!)
attrs &
pids+=($!)
renamer &
pids+=($!)
( # a process that opens, reads partially and closes in a tight loop
	n=0
	while running; do
		printf -v f '%s/images/s-%06d' "$M" $((n % 10))
		timeout 60 head -c 100 "$f" >/dev/null || err head "head $f"
		n=$((n + 1))
	done
	echo "head: $n" >>"$E2E_T/counts"
) &
pids+=($!)
wait "${pids[@]}"
log "operations per worker: $(sort "$E2E_T/counts" | tr '\n' ' ')"
[[ -s $ERR ]] && fail "$(wc -l <"$ERR") failed operations, e.g.: $(head -n 5 "$ERR")"
daemon_alive "$M"

log "the server holds exactly the seeded and kept images"
cat "$E2E_T"/kept.* 2>/dev/null | sort >"$E2E_T/kept"
api_ids | grep -v '^s-' | sort >"$E2E_T/extra" || true
diff "$E2E_T/kept" "$E2E_T/extra" >/dev/null || fail "server images besides the seeds differ from the kept ones: $(diff "$E2E_T/kept" "$E2E_T/extra" | head -5)"
cache_verify "$E2E_T/cache"
expect_eq "temp files in the cache" "$(cache_tmp_count)" 0
umount_fs "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

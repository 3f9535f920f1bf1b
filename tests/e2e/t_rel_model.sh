#!/usr/bin/env bash
# Issue 12, part 5: the model-based fault test (tests/e2e/rel_model.py) on a real mount,
# synchronous mode, with a fixed seed and a short run. Long runs:
#   IMAGESFS_MODEL_SEED=N IMAGESFS_MODEL_OPS=600 ctest -R e2e_t_rel_model
# MODEL_MODE=writeback (t_rel_model_writeback.sh) mounts with -o writeback and compares the
# account after `imagesfs sync MOUNT`; it fails when mount.imagesfs --help lacks writeback.
# shellcheck disable=SC2119 # helpers take optional arguments
# shellcheck source=tests/e2e/rel_lib.sh
source "$(dirname "$0")/rel_lib.sh"

mode=${MODEL_MODE:-sync}
help=$("$IMAGESFS_BIN/mount.imagesfs" --help 2>&1 || true)
journal=0
grep -q writeback <<<"$help" && journal=1
# -o writeback is part of the product: a build without it fails here instead of skipping.
if [[ $mode == writeback && $journal == 0 ]]; then
	fail "mount.imagesfs --help does not list writeback"
fi
opts=""
[[ $mode == writeback ]] && opts=writeback

emu_start
M=$E2E_T/mnt
mount_fs "$M" "$opts"
mkdir -p "$E2E_T/work"
rc=0
REL_BASE="$EMU_URL/accounts/$ACCOUNT/images" PYTHONPATH="$(dirname "$0")" EMU_ADMIN=$EMU_ADMIN \
	MODEL_MOUNT=$M MODEL_MODE=$mode MODEL_JOURNAL=$journal MODEL_SYNC="$IMAGESFS_BIN/imagesfs" \
	MODEL_WORK=$E2E_T/work IMAGESFS_MODEL_SEED=${IMAGESFS_MODEL_SEED:-12} \
	IMAGESFS_MODEL_OPS=${IMAGESFS_MODEL_OPS:-120} \
	python3 -u "$(dirname "$0")/rel_model.py" || rc=$?
((rc == 0)) || fail "model test failed (seed and op sequence above)"
daemon_alive "$M"
rel_umount "$M"
sanitizer_clean "${FS_LOG[$M]}"
echo PASS

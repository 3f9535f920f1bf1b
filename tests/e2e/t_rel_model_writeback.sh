#!/usr/bin/env bash
# The model-based fault test in write-back mode (-o writeback; the account is compared
# after `imagesfs sync MOUNT`). See t_rel_model.sh.
MODEL_MODE=writeback exec bash "$(dirname "$0")/t_rel_model.sh"

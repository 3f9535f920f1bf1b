#!/usr/bin/env bash
# t_rel_lost_upload.sh on the batch host (batch=on): lost responses of uploads are recovered
# there too (the fault rules of the emulator hit an operation on either host).
E2E_BATCH=on exec bash "$(dirname "$0")/t_rel_lost_upload.sh" "$@"

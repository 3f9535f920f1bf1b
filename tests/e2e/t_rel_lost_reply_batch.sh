#!/usr/bin/env bash
# t_rel_lost_reply.sh on the batch host (batch=on): a DELETE or PATCH whose replies are all
# lost is settled by reading the image back there too (every delete, edit and read-back is
# asserted to have gone to the batch host).
E2E_BATCH=on exec bash "$(dirname "$0")/t_rel_lost_reply.sh" "$@"

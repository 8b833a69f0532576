#!/usr/bin/env bash
# Continual test-time adaptation on several processes (GPUs, or CPU processes with
# gloo), started by torchrun; like mmseg's tools/dist_test.sh.
#
#   bash tools/dist_test_ctta.sh CONFIG CHECKPOINT GPUS [tools/test_ctta.py options]
#
# With GPUS processes and the config's per-process batch b, every adaptation step
# consumes the next GPUS*b images of the stream: the run equals one process with
# batch GPUS*b (docs/multi_gpu.md). Multi-node: NNODES, NODE_RANK, MASTER_ADDR and
# PORT as for mmseg. PYTHON picks the interpreter (default: python).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test_ctta.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$DIR/test_ctta.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch \
    "${@:4}"

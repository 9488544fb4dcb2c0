#!/bin/bash
# `dfm chain` with torchrun, without a scheduler: run this script on every node with its NODE_RANK
# (0 on the node whose address is MASTER_ADDR). Everything after the script name goes to `dfm chain`.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS=4 bash docs/cluster/torchrun.sh --config ... --run_dir /shared/runs/x
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 GPUS=4 bash docs/cluster/torchrun.sh --config ... --run_dir /shared/runs/x
set -eu
: "${NNODES:=1}" "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}" "${GPUS:=1}"
exec torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS" --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --no-python \
    dfm chain --trainer.accelerator "${ACCELERATOR:-gpu}" --trainer.strategy ddp \
    --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" "$@"

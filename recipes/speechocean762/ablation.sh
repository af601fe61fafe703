#!/usr/bin/env bash
# The recurrent-network options on speechocean762: recipes/an4/ablation.sh with this
# corpus's manifests (stage 0 of run.sh), the same network and the same number of
# updates as on AN4 (7 epochs of 2,300 utterances: 2,509 steps; 30 of AN4's 869: 2,550),
# scoring the last epoch (at this budget validation WER stays near 100 %: the epoch of
# lowest validation WER says nothing).
#
#   recipes/speechocean762/ablation.sh               # about 2.5 hours on 2 cores
#   python recipes/an4/ablation_table.py exp/speechocean762-ablation cer
set -euo pipefail
here=$(dirname "$0")
DATA=${DATA:-data/speechocean762} EXP=${EXP:-exp/speechocean762-ablation} \
  BUDGET="train.epochs=7 ${BUDGET:-}" CHECKPOINT=${CHECKPOINT:-last.pt} \
  exec "$here/../an4/ablation.sh"

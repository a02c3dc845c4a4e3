#!/usr/bin/env bash
# Reproduces benchmarks/results/coexpression_init_{genelink,heldout_tf,heldout_target}.md: the five
# BEELINE TFs+500 datasets with expression, 5 seeds, embedder none, with configs/coexpression-init.yaml
# (compare with accuracy.md and peers.md, which use the default model), and lab_coexpression.md.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}/beeline/Specific
DATA=()
for c in hHEP mDC mESC mHSC-GM mHSC-L; do DATA+=(--data "$S/$c/TFs500"); done
for protocol in genelink heldout_tf heldout_target; do
  .venv/bin/scregnet benchmark "${DATA[@]}" --seeds 5 --protocol "$protocol" --embedder none \
    --config configs/coexpression-init.yaml --out "benchmarks/results/coexpression_init_$protocol.json"
done
.venv/bin/python benchmarks/lab_coexpression.py --cells 3000 --genes 8000 --seeds 3 \
  --out benchmarks/results/lab_coexpression.md
.venv/bin/python benchmarks/compare_coexpression_init.py

#!/usr/bin/env bash
# Reproduces benchmarks/results/accuracy.md and accuracy_paper_architecture.md
# (5 BEELINE TFs+500 datasets with expression, genelink protocol, 5 seeds, embedders none + pca).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}/beeline/Specific
DATA=()
for c in hHEP mDC mESC mHSC-GM mHSC-L hESC mHSC-E; do DATA+=(--data "$S/$c/TFs500"); done
.venv/bin/scregnet benchmark "${DATA[@]}" --seeds 5 --protocol genelink --embedder none --embedder pca \
  --out benchmarks/results/accuracy.json
.venv/bin/scregnet benchmark "${DATA[@]}" --seeds 5 --protocol genelink --embedder none --embedder pca \
  --config configs/paper-architecture.yaml --out benchmarks/results/accuracy_paper_architecture.json

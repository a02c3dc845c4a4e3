#!/usr/bin/env bash
# Retrain after new priors vs cold run (issue: reuse of cached ingest/validate/embed).
# Embedder: Geneformer gf-6L-30M architecture with random weights (same compute as the real
# checkpoint; no weights ship here) on BEELINE mHSC-L TFs+500, CPU. Prints wall seconds of:
#   cold     fresh $SCREGNET_HOME, embedding computed
#   warm     same expression, 40 extra prior edges: embed step served from the cache
#   control  same store and priors as warm, cache disabled: embedding recomputed
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}
W=$(mktemp -d)
export SCREGNET_HOME=$W/home
.venv/bin/python - "$S" "$W" <<'PY'
import sys, pandas as pd
from scregnet.embeddings.geneformer import build_random_model
S, W = sys.argv[1], sys.argv[2]
build_random_model(f"{S}/scfm/geneformer/configs/gf-6L-30M-i2048/config.json", seed=0).save_pretrained(f"{W}/gf6", safe_serialization=True)
net = pd.read_csv(f"{S}/beeline/Specific/mHSC-L/TFs500/BL--network.csv")
net.sample(40, random_state=0).rename(columns={"Gene1": "tf", "Gene2": "target"}).to_csv(f"{W}/new_priors.csv", index=False)
PY
for cache in true false; do cat > "$W/gf_$cache.yaml" <<YAML
enable_cache: $cache
parameters:
  config:
    embedder: {kind: geneformer, geneformer: {model: $W/gf6, dictionaries: $S/scfm/geneformer, device: cpu}}
YAML
done
D=$S/beeline/Specific/mHSC-L/TFs500
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
echo "cold    $(t .venv/bin/scregnet train --data "$D" --config "$W/gf_true.yaml")"
echo "warm    $(t .venv/bin/scregnet train --data "$D" --priors "$W/new_priors.csv" --config "$W/gf_true.yaml")"
echo "control $(t .venv/bin/scregnet train --data "$D" --priors "$W/new_priors.csv" --config "$W/gf_false.yaml")"

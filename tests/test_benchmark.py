import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_cli_writes_the_documented_json_and_skips_missing_expression(synthetic_dir, tmp_path, beeline):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "config": {"model": {"gnn_dims": [16], "mlp_dims": [8]}, "train": {"max_epochs": 15, "patience": 2}}
                }
            }
        )
    )
    out = tmp_path / "bench.json"
    hesc = beeline("hESC")  # labels but no expression: must be skipped with a message
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scregnet.cli",
            "benchmark",
            "--data",
            str(synthetic_dir),
            "--data",
            str(hesc),
            "--seeds",
            "2",
            "--protocol",
            "genelink",
            "--embedder",
            "none",
            "--embedder",
            "pca",
            "--config",
            str(cfg),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skip {hesc}" in proc.stdout and "expression matrix is absent" in proc.stdout
    report = json.loads(out.read_text())
    assert [(r["dataset"], r["embedder"]) for r in report["results"]] == [("synthetic0", "none"), ("synthetic0", "pca")]
    for r in report["results"]:
        assert r["protocol"] == "genelink" and r["seconds_per_seed"] > 0
        m = r["model"]
        for key in ("auroc", "auroc_std", "auprc", "auprc_std", "per_tf_auroc"):
            assert 0 <= m[key] <= 1, key
        assert set(r["baselines"]) == {"label_count", "tf_prior", "target_popularity"}
        assert all({"auroc", "auprc"} <= set(b) for b in r["baselines"].values())
        per_seed = [s["model"]["auroc"] for s in r["per_seed"]]
        assert len(per_seed) == 2 and abs(sum(per_seed) / 2 - m["auroc"]) < 1e-9
    md = out.with_suffix(".md").read_text()
    assert "| synthetic0 | genelink | pca |" in md and "label_count" in md and "Command: `scregnet benchmark" in md
    header, rule, *rows = [line for line in md.splitlines() if line.startswith("|")]
    assert all(row.count("|") == header.count("|") == rule.count("|") for row in rows)  # well-formed table

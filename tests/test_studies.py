"""Paper studies as benchmark modes: ablation and GNN variants, label-noise robustness + box plot."""

from __future__ import annotations

import json

import numpy as np

from scregnet import studies
from scregnet.splits import make_split


def test_variants_cover_the_paper_ablations(fast_config):
    v = studies.ablation_variants(fast_config)
    assert set(v) == {"full", "no_gnn", "no_embedding"}
    assert v["full"].embedder.kind == "pca" and v["full"].model.use_gnn
    assert not v["no_gnn"].model.use_gnn and v["no_gnn"].embedder.kind == "pca"
    assert v["no_embedding"].embedder.kind == "none" and v["no_embedding"].model.use_gnn
    assert {k: c.model.gnn for k, c in studies.gnn_variants(fast_config).items()} == {
        "gcn": "gcn",
        "sage": "sage",
        "gat": "gat",
    }


def test_flip_labels_touches_training_only(synthetic, fast_config):
    split = make_split(synthetic.label_graph(), fast_config.split)
    noisy = studies.flip_labels(split, 0.05, np.random.default_rng(0))
    changed = (noisy.train[:, 2] != split.train[:, 2]).sum()
    assert changed == round(0.05 * len(split.train))
    np.testing.assert_array_equal(noisy.train[:, :2], split.train[:, :2])
    np.testing.assert_array_equal(noisy.val, split.val)
    np.testing.assert_array_equal(noisy.test, split.test)


def test_noise_and_ablation_studies_write_tables_and_box_plot(synthetic_dir, fast_config, tmp_path):
    cfg = fast_config.model_copy(deep=True)
    cfg.train.max_epochs, cfg.train.threads = 10, 1
    report = studies.run_study_kind(
        "noise", [synthetic_dir], cfg, levels=[0.0, 0.05], corruptions=2, log=lambda _: None
    )
    assert [(r["level"], r["corruption"]) for r in report["results"]] == [(0.0, 0), (0.0, 1), (0.05, 0), (0.05, 1)]
    paths = studies.write_study(report, tmp_path / "noise.json", "scregnet study noise ...")
    assert paths["png"].stat().st_size > 1000
    assert "| 5% | 2 |" in paths["md"].read_text()
    report = studies.run_study_kind("ablation", [synthetic_dir], cfg, seeds=2, log=lambda _: None)
    assert [r["variant"] for r in report["results"]] == ["full", "no_gnn", "no_embedding"]
    paths = studies.write_study(report, tmp_path / "abl.json")
    assert json.loads(paths["json"].read_text())["kind"] == "ablation"
    assert "no_gnn" in paths["md"].read_text()

"""Issue 15 item 5, measured before it is built: do peer scores help as pair inputs of the head?

The model's link head gets two extra pair inputs, log1p(GRNBoost2 importance) and |Spearman rho|
(each z-scored over the regulator x gene matrix; a missing score = the lowest), next to its
existing Pearson r, |r|. Same splits, seeds and config otherwise. The variant is kept only if it
improves VALIDATION (the selection metric); test is reported for information. The model code is
not changed: the script swaps `scregnet.train.build_model` for a subclass with the extra inputs.

    OMP_NUM_THREADS=1 python benchmarks/peer_features.py    # -> benchmarks/results/peer_features.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import scregnet.train as train_mod  # noqa: E402
from scregnet.config import PeerConfig, RunConfig  # noqa: E402
from scregnet.data import load_beeline  # noqa: E402
from scregnet.errors import DataError, ExpressionMissingError  # noqa: E402
from scregnet.experiment import run_experiment  # noqa: E402
from scregnet.models import ScRegNet  # noqa: E402
from scregnet.peers import dataset_peers  # noqa: E402
from scregnet.train import ModelInputs  # noqa: E402
from scregnet.uncertainty import mean_std  # noqa: E402

PEER_INPUTS = ("grnboost2", "spearman")


class PeerInputScRegNet(ScRegNet):
    """ScRegNet whose head also reads per-pair peer scores from a [N, N, k] buffer."""

    def __init__(self, *args, pair_features: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("pair_features", pair_features)
        old = self.head
        self.head = torch.nn.Linear(old.in_features + pair_features.shape[2], 2)
        if self.prior != "none":  # keep "untrained model = the prior"
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

    def forward(self, x, edge_index, pairs, labels=None):
        h = self.node_representation(x, edge_index)
        tf = self.tf_tower(h)
        target = tf if self.target_tower is self.tf_tower else self.target_tower(h)
        a, b = tf[pairs[:, 0]], target[pairs[:, 1]]
        feats = [a, b, a * b] if self.interaction else [a, b]
        if self.degree_features:
            feats += [self.degree[pairs[:, 0], :1], self.degree[pairs[:, 1], 1:]]
        if self.coexpression:
            r = self.correlation(x)[pairs[:, 0], pairs[:, 1]].unsqueeze(1)
            feats += [r, r.abs()]
        feats.append(self.pair_features[pairs[:, 0], pairs[:, 1]])
        logits = self.head(torch.cat(feats, dim=1))
        if self.prior != "none":
            prior = self.prior_logit(pairs, labels)
            logits = logits + torch.stack([torch.zeros_like(prior), prior], dim=1)
        return logits


def pair_feature_tensor(peers: dict, genes: list[str]) -> torch.Tensor:
    """[N, N, k] float32: row = TF, column = target; rows of non-regulators stay 0 (never scored as TFs)."""
    n = len(genes)
    pos = {g: i for i, g in enumerate(genes)}
    out = np.zeros((n, n, len(PEER_INPUTS)), dtype=np.float32)
    for j, name in enumerate(PEER_INPUTS):
        m = peers[name]
        s = m.scores.astype(np.float64)
        if name == "grnboost2":
            s = np.log1p(s)
        ok = np.isfinite(s)
        z = (s - s[ok].mean()) / (s[ok].std() or 1.0)
        z[~ok] = z[ok].min()
        rows = np.array([pos[r] for r in m.regulators])
        out[rows, :, j] = z
    return torch.from_numpy(out)


def run(args) -> dict:
    original = train_mod.build_model
    rows = []
    for cell in args.cells:
        try:
            data = load_beeline(args.shared / "beeline" / "Specific" / cell / "TFs500")
        except ExpressionMissingError as exc:
            print(f"skip {cell}: {exc}", flush=True)
            continue
        peers = dataset_peers(data, PeerConfig(peers=list(PEER_INPUTS), n_jobs=args.n_jobs))
        feats = pair_feature_tensor(peers, data.genes)
        inputs = ModelInputs.build(data, None)

        def with_peers(inp, model_cfg, feats=feats):
            """The arguments `scregnet.serialize.build_scregnet` passes, plus the pair features (embedder none)."""
            assert inp.embedding is None
            return PeerInputScRegNet(
                num_features=inp.features.shape[1],
                embedding=None,
                gnn=model_cfg.gnn,
                gnn_dims=model_cfg.gnn_dims,
                mlp_dims=model_cfg.mlp_dims,
                dropout=model_cfg.dropout,
                gat_heads=model_cfg.gat_heads,
                gat_concat=model_cfg.gat_concat,
                gat_negative_slope=model_cfg.gat_negative_slope,
                shared_towers=model_cfg.shared_towers,
                use_gnn=model_cfg.use_gnn,
                head=model_cfg.head,
                num_nodes=len(inp.genes),
                degree_features=model_cfg.degree_features,
                prior=model_cfg.prior,
                prior_eps=model_cfg.prior_eps,
                prior_leave_one_out=model_cfg.prior_leave_one_out,
                coexpression=model_cfg.coexpression,
                pair_features=feats,
            )

        for protocol in args.protocols:
            cfg = RunConfig()
            cfg.split.protocol = protocol
            for seed in range(args.seeds):
                row = {"dataset": data.name, "protocol": protocol, "seed": seed}
                try:
                    for variant, builder in (("base", original), ("peers", with_peers)):
                        train_mod.build_model = builder
                        t0 = time.perf_counter()
                        res = run_experiment(data, cfg, None, seed=seed, inputs=inputs)
                        ev = res.evaluation.model
                        row[variant] = {
                            "val_select": res.train.best_val,
                            "val_per_tf_auroc": ev["val"]["per_tf_auroc"],
                            "val_auroc": ev["val"]["auroc"],
                            "test_auroc": ev["test"]["auroc"],
                            "test_auprc": ev["test"]["auprc"],
                            "test_per_tf_auroc": ev["test"]["per_tf_auroc"],
                            "best_epoch": res.train.best_epoch,
                            "seconds": time.perf_counter() - t0,
                        }
                except DataError as exc:
                    print(f"skip {data.name} {protocol} seed {seed}: {exc}", flush=True)
                    continue
                finally:
                    train_mod.build_model = original
                rows.append(row)
                b, p = row["base"], row["peers"]
                print(
                    f"{data.name} {protocol} seed {seed}: val select {b['val_select']:.4f} -> {p['val_select']:.4f}, "
                    f"val per-TF {b['val_per_tf_auroc']:.3f} -> {p['val_per_tf_auroc']:.3f}, "
                    f"test AUROC {b['test_auroc']:.3f} -> {p['test_auroc']:.3f}, per-TF {b['test_per_tf_auroc']:.3f} -> "
                    f"{p['test_per_tf_auroc']:.3f} (best epoch {b['best_epoch']} / {p['best_epoch']})",
                    flush=True,
                )
    return {"rows": rows}


def markdown(report: dict, command: str) -> str:
    lines = [
        "# Peer scores as pair inputs of the head (issue 15 item 5): measured, not adopted unless validation improves",
        "",
        f"Command: `{command}`",
        "",
        "Variant `peers`: the head also reads log1p(GRNBoost2 importance) and |Spearman rho| of the pair (z-scored; "
        "missing = lowest), beside the default Pearson r, |r|. Everything else is the default `RunConfig` "
        "(embedder none). Δ = peers - base, mean ± std over seeds; selection metric = mean of validation AUROC and "
        "AUPRC (what checkpoint selection maximises).",
        "",
        "| dataset | protocol | seeds | Δ val selection metric | Δ val per-TF AUROC | Δ test AUROC | Δ test per-TF AUROC "
        "| base test per-TF AUROC | seeds where val improved |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in report["rows"]:
        groups.setdefault((r["dataset"], r["protocol"]), []).append(r)
    for (ds, pr), rs in groups.items():

        def d(key, rs=rs):
            return mean_std(r["peers"][key] - r["base"][key] for r in rs)

        improved = sum(r["peers"]["val_select"] > r["base"]["val_select"] for r in rs)
        cells = [
            f"{m:+.4f} ± {s:.4f}"
            for m, s in (d(k) for k in ("val_select", "val_per_tf_auroc", "test_auroc", "test_per_tf_auroc"))
        ]
        base = mean_std(r["base"]["test_per_tf_auroc"] for r in rs)
        lines.append(f"| {ds} | {pr} | {len(rs)} | " + " | ".join(cells) + f" | {base[0]:.3f} | {improved}/{len(rs)} |")
    rows = report["rows"]
    improved = sum(r["peers"]["val_select"] > r["base"]["val_select"] for r in rows)
    strict = [r for r in rows if r["protocol"] != "genelink"]
    m, sd = mean_std(r["peers"]["val_select"] - r["base"]["val_select"] for r in strict)
    keep = improved > len(rows) / 2 and m > 0
    lines += [
        "",
        f"Validation selection metric improved in {improved} of {len(rows)} runs; on the strict splits "
        f"(heldout_tf, heldout_target) its mean change is {m:+.4f} ± {sd:.4f} over {len(strict)} runs. "
        + (
            "Decision: the peer inputs help on validation; worth wiring as an option."
            if keep
            else "Decision: NOT adopted (no consistent validation gain; the head's peer inputs stay unbuilt, "
            "default off). Where the checkpoint is the prior itself (best epoch 0), extra pair inputs cannot "
            "matter: the prior already wins validation."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--cells", nargs="+", default=["hHEP", "mDC", "mESC", "mHSC-GM", "mHSC-L"])
    ap.add_argument("--protocols", nargs="+", default=["genelink", "heldout_tf", "heldout_target"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peer_features.json")
    args = ap.parse_args(argv)
    report = run(args)
    command = " ".join(
        ["OMP_NUM_THREADS=1 python benchmarks/peer_features.py", *(argv if argv is not None else sys.argv[1:])]
    )
    args.out.write_text(json.dumps({"command": command, **report}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(report, command))


if __name__ == "__main__":
    main()

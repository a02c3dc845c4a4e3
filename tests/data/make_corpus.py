"""Regenerate the malformed-input corpus: `python tests/data/make_corpus.py`.

`good/` is a tiny SYNTHETIC BEELINE dataset; every directory under `bad/` breaks it in one way.
`cases.json` maps each case to the file the error must name and a fragment of the message.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EXPR = "BL--ExpressionData.csv"


def _good() -> Path:
    from scregnet.synthetic import make_synthetic_dataset

    good = HERE / "good"
    if good.exists():
        shutil.rmtree(good)
    make_synthetic_dataset(good, seed=7, n_cells=30, n_genes=40, n_tfs=5, mean_targets=6)
    return good


def _case(name: str) -> Path:
    d = HERE / "bad" / name
    shutil.copytree(HERE / "good", d)
    return d


def _edit_expr(d: Path, fn) -> None:
    e = pd.read_csv(d / EXPR, index_col=0)
    e = fn(e)
    e.to_csv(d / EXPR)


def main() -> None:
    _good()
    if (HERE / "bad").exists():
        shutil.rmtree(HERE / "bad")
    cases: dict[str, dict] = {}

    def add(name, file, fragment, fn=None, priors=None):
        d = _case(name)
        if fn:
            fn(d)
        cases[name] = {"file": file, "expect": fragment, **({"priors": priors} if priors else {})}

    add("missing_target", "bad/missing_target", "missing Target.csv", lambda d: (d / "Target.csv").unlink())
    add("missing_expression", "bad/missing_expression", "expression matrix is absent", lambda d: (d / EXPR).unlink())
    add("empty_expression", EXPR, "file is empty", lambda d: (d / EXPR).write_text(""))
    add(
        "wrong_delimiter",
        "Target.csv",
        "wrong delimiter",
        lambda d: pd.read_csv(d / "Target.csv", index_col=0).to_csv(d / "Target.csv", sep=";"),
    )
    add(
        "wrong_header",
        "TF.csv",
        "missing column(s) ['TF']",
        lambda d: pd.read_csv(d / "TF.csv", index_col=0).rename(columns={"TF": "Regulator"}).to_csv(d / "TF.csv"),
    )
    add(
        "non_numeric",
        EXPR,
        "is not a number",
        lambda d: _edit_expr(
            d,
            lambda e: e.astype(object).where(
                ~((e.index == e.index[3])[:, None] & (np.arange(e.shape[1]) == 2)[None, :]), "abc"
            ),
        ),
    )

    def setval(v):
        def f(d):
            def g(e):
                e.iloc[4, 5] = v
                return e

            _edit_expr(d, g)

        return f

    add("nan_value", EXPR, "NaN or infinite", setval(np.nan))
    add("infinite_value", EXPR, "NaN or infinite", setval(np.inf))
    add("negative_value", EXPR, "negative expression values", setval(-1.5))

    def dup_genes(d):
        t = pd.read_csv(d / "Target.csv", index_col=0)
        t.loc[1, "Gene"] = t.loc[0, "Gene"]
        t.to_csv(d / "Target.csv")
        _edit_expr(d, lambda e: e.set_axis([t.loc[0, "Gene"] if i == 1 else g for i, g in enumerate(e.index)]))

    add("duplicate_genes", EXPR, "duplicated gene names", dup_genes)

    def dup_cells(d):
        lines = (d / EXPR).read_text().split("\n")
        head = lines[0].split(",")
        head[2] = head[1]
        lines[0] = ",".join(head)
        (d / EXPR).write_text("\n".join(lines))

    add("duplicate_cells", EXPR, "duplicated cell names", dup_cells)
    add(
        "rows_mismatch_target",
        EXPR,
        "does not match Target.csv",
        lambda d: _edit_expr(d, lambda e: e.iloc[[1, 0] + list(range(2, len(e)))]),
    )

    def label_oob(d):
        lab = pd.read_csv(d / "Label.csv", index_col=0)
        lab.loc[2, "Target"] = 999
        lab.to_csv(d / "Label.csv")

    add("label_index_out_of_range", "Label.csv", "out of range", label_oob)

    def tf_oob(d):
        tf = pd.read_csv(d / "TF.csv", index_col=0)
        tf.loc[0, "index"] = -3
        tf.to_csv(d / "TF.csv")

    add("tf_index_out_of_range", "TF.csv", "out of range", tf_oob)

    def self_loop(d):
        lab = pd.read_csv(d / "Label.csv", index_col=0)
        lab.loc[len(lab)] = [lab.loc[0, "TF"], lab.loc[0, "TF"]]
        lab.to_csv(d / "Label.csv")

    add("self_loop", "Label.csv", "self loop", self_loop)

    def dup_edge(d):
        lab = pd.read_csv(d / "Label.csv", index_col=0)
        pd.concat([lab, lab.iloc[:3]], ignore_index=True).to_csv(d / "Label.csv")

    add("duplicate_edges_warn", "Label.csv", "duplicated edge(s)", dup_edge)

    def no_positive(d):
        pd.DataFrame(columns=["TF", "Target"]).to_csv(d / "Label.csv")

    add("no_tf_with_positive", "Label.csv", "no prior edges", no_positive)

    def unknown_prior(d):
        pd.DataFrame({"tf": ["TF000", "NOT_A_GENE"], "target": ["GHOST", "GENE0001"]}).to_csv(
            d / "extra_priors.csv", index=False
        )

    add(
        "priors_name_unmeasured_genes",
        "extra_priors.csv",
        "is not in the expression",
        unknown_prior,
        priors="extra_priors.csv",
    )

    def truncated_gz(d):
        raw = gzip.compress((d / EXPR).read_bytes())
        (d / EXPR).unlink()
        (d / f"{EXPR}.gz").write_bytes(raw[: len(raw) // 2])

    add("truncated_gz", f"{EXPR}.gz", "truncated or corrupt", truncated_gz)

    def too_small(d):
        t = pd.read_csv(d / "Target.csv", index_col=0).iloc[:6]
        t.to_csv(d / "Target.csv")
        tf = pd.read_csv(d / "TF.csv", index_col=0)
        tf[tf["index"] < 6].to_csv(d / "TF.csv")
        lab = pd.read_csv(d / "Label.csv", index_col=0)
        lab[(lab.TF < 6) & (lab.Target < 6)].to_csv(d / "Label.csv")
        _edit_expr(d, lambda e: e.iloc[:6])

    add("too_few_genes", EXPR, "expected at least 20", too_small)

    # An .h5ad cut short (as an interrupted upload would leave it).
    h5 = HERE / "bad" / "truncated_h5ad"
    h5.mkdir(parents=True)
    e = pd.read_csv(HERE / "good" / EXPR, index_col=0)
    a = ad.AnnData(e.T.to_numpy(np.float32))
    a.var_names, a.obs_names = list(e.index), list(e.columns)
    a.write_h5ad(h5 / "cells.h5ad")
    raw = (h5 / "cells.h5ad").read_bytes()
    (h5 / "cells.h5ad").write_bytes(raw[: len(raw) // 3])
    pd.DataFrame({"tf": ["TF000"], "target": ["GENE0001"]}).to_csv(h5 / "priors.csv", index=False)
    cases["truncated_h5ad"] = {
        "file": "cells.h5ad",
        "expect": "truncated or corrupt",
        "h5ad": "cells.h5ad",
        "priors": "priors.csv",
    }

    (HERE / "cases.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

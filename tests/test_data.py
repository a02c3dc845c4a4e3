import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from scregnet.config import DataConfig
from scregnet.data import dataset_name, load_beeline, load_beeline_labels, load_dataset, load_h5ad, read_priors
from scregnet.errors import DataError, ExpressionMissingError


def test_beeline_gz_expression_is_cells_by_genes_in_target_order(beeline):
    ds = load_beeline(beeline("hHEP"))
    assert ds.name == "hHEP/TFs500"
    assert ds.adata.shape == (425, 948)  # cells x genes, as in the BEELINE README
    target = pd.read_csv(beeline("hHEP") / "Target.csv", index_col=0)
    assert list(ds.adata.var_names) == list(target.sort_values("index")["Gene"].str.upper())
    graph = ds.label_graph()
    assert len(graph.edges) == 9939 and len(graph.tf_index) == 30
    assert ds.sources["expression"].endswith(".csv.gz")


def test_missing_expression_is_reported_not_crashed(beeline):
    with pytest.raises(ExpressionMissingError, match="expression matrix is absent"):
        load_beeline(beeline("hESC"))
    genes, tfs, priors = load_beeline_labels(beeline("hESC"))  # labels alone still load
    assert len(genes) == 910 and len(priors) == 4545


def test_plain_and_gz_files_load_identically(synthetic_dir, tmp_path):
    gz = tmp_path / "gz"
    shutil.copytree(synthetic_dir, gz)
    for name in ("BL--ExpressionData.csv", "Label.csv"):
        with open(gz / name, "rb") as src, gzip.open(gz / f"{name}.gz", "wb") as dst:
            dst.write(src.read())
        (gz / name).unlink()
    a, b = load_beeline(synthetic_dir), load_beeline(gz)
    np.testing.assert_array_equal(a.adata.X, b.adata.X)
    np.testing.assert_array_equal(a.label_graph().edges, b.label_graph().edges)


def test_expression_rows_must_match_target_csv(synthetic_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(synthetic_dir, bad)
    expr = pd.read_csv(bad / "BL--ExpressionData.csv", index_col=0)
    expr.iloc[[0, 1]] = expr.iloc[[1, 0]].to_numpy()
    expr.index = list(expr.index[[1, 0]]) + list(expr.index[2:])
    expr.to_csv(bad / "BL--ExpressionData.csv")
    with pytest.raises(DataError, match=r"BL--ExpressionData.csv: row 2: gene .* does not match Target.csv index 0"):
        load_beeline(bad)


def test_label_index_out_of_range_names_file_row_and_range(synthetic_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(synthetic_dir, bad)
    label = pd.read_csv(bad / "Label.csv", index_col=0)
    label.loc[3, "Target"] = 10_000
    label.to_csv(bad / "Label.csv")
    with pytest.raises(
        DataError,
        match=r"Label.csv: row 5, column 'Target': node index '10000' is out of range; expected an integer in 0..79",
    ):
        load_beeline(bad)


def test_h5ad_plus_priors_in_both_header_styles(synthetic, tmp_path):
    path = tmp_path / "cells.h5ad"
    adata = synthetic.adata.copy()
    adata.var_names = [g.lower() for g in adata.var_names]  # symbols are upper-cased on load
    adata.write_h5ad(path)
    graph = synthetic.label_graph()
    edges = [(graph.genes[a], graph.genes[b]) for a, b in graph.edges]
    half = len(edges) // 2
    pd.DataFrame(edges[:half], columns=["tf", "target"]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(edges[half:], columns=["Gene1", "Gene2"]).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    ds = load_h5ad(path, [tmp_path / "a.csv", tmp_path / "b.tsv"])
    assert ds.adata.shape == synthetic.adata.shape
    np.testing.assert_array_equal(ds.label_graph().edges, graph.edges)
    assert load_dataset(DataConfig(h5ad=path, priors=[tmp_path / "a.csv"])).priors.shape[0] == half


def test_priors_with_wrong_delimiter_say_so(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("tf;target\nA;B\n")
    with pytest.raises(DataError, match=r"p.csv: no tf column.*found \['tf;target'\]"):
        read_priors(path)


def test_dataset_name_from_path(tmp_path):
    assert dataset_name(tmp_path / "Specific" / "mDC" / "TFs500") == "mDC/TFs500"
    assert dataset_name(tmp_path / "mydata") == "mydata"


def test_zscored_features_are_genes_by_cells_and_standardised(synthetic):
    x = synthetic.zscored_features()
    assert x.shape == (synthetic.adata.n_vars, synthetic.adata.n_obs)
    varying = synthetic.adata.X.std(axis=0) > 0
    np.testing.assert_allclose(x[varying].mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(x[varying].std(axis=1), 1, atol=1e-4)

"""scanpy preprocessing (scregnet/preprocess.py) and the sparse paths it relies on."""

from __future__ import annotations

import hashlib
import re
import tracemalloc

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scregnet.config import PreprocessConfig
from scregnet.data import CELL_FEATURES_KEY, GRNDataset, hash_matrix, load_beeline, load_h5ad
from scregnet.errors import DataError
from scregnet.preprocess import detect_input, metacell_profiles, preprocess
from scregnet.synthetic import MT_GENES, make_counts_dataset, write_counts_h5ad


def _cfg(**kw) -> PreprocessConfig:
    """Thresholds for the small generated data (~100 detected genes per cell)."""
    base = {"min_genes_per_cell": 20, "min_cells_per_gene": 3, "n_top_genes": 200}
    return PreprocessConfig(**(base | kw))


@pytest.fixture(scope="module")
def counts_files(tmp_path_factory):
    return make_counts_dataset(tmp_path_factory.mktemp("counts"), n_cells=400, n_genes=1500, n_tfs=25, seed=1)


@pytest.fixture
def counts(counts_files) -> GRNDataset:
    h5ad, priors = counts_files
    return load_h5ad(h5ad, [priors])


def _lognorm(x):
    """normalize_total(1e4) + log1p, by hand (cells x genes CSR)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1e4 / np.where(totals > 0, totals, 1)) @ x).log1p()


class NoDense(sp.csr_matrix):
    """A CSR matrix that refuses to become dense."""

    def toarray(self, *a, **k):
        raise AssertionError("densified")

    todense = toarray


# ---------------------------------------------------------------------------------- input kind


def test_detects_counts_log_data_and_counts_in_a_layer_or_raw(counts):
    x = counts.adata.X
    assert (detect_input(counts.adata).kind, detect_input(counts.adata).counts_from) == ("counts", "X")

    logged = ad.AnnData(_lognorm(x), var=counts.adata.var.copy())
    kind = detect_input(logged)
    assert (kind.kind, kind.counts_from) == ("log", "") and "not counts" in kind.reason

    logged.layers["counts"] = x.copy()
    assert (detect_input(logged).kind, detect_input(logged).counts_from) == ("log", "layers['counts']")
    del logged.layers["counts"]
    logged.raw = ad.AnnData(x.copy(), var=pd.DataFrame(index=[g.lower() for g in counts.adata.var_names]))
    assert (detect_input(logged).kind, detect_input(logged).counts_from) == ("log", "raw")
    # The user says "counts": the raw counts are found and used.
    assert (detect_input(logged, "counts").kind, detect_input(logged, "counts").counts_from) == ("counts", "raw")

    scaled = ad.AnnData(x * 1.5)  # a float matrix with non-integer values is not counts
    assert detect_input(scaled).kind == "log"
    as_int = ad.AnnData(sp.csr_matrix(x, dtype=np.int32))
    assert detect_input(as_int).kind == "counts"
    dense_counts = ad.AnnData(x[:50].toarray())
    assert detect_input(dense_counts).kind == "counts"


def test_log_input_with_counts_layer_is_not_renormalised_and_keeps_counts(counts):
    x = counts.adata.X
    logged = ad.AnnData(_lognorm(x).astype(np.float32), obs=counts.adata.obs.copy(), var=counts.adata.var.copy())
    logged.layers["counts"] = x.copy()
    out = preprocess(logged, counts.priors, _cfg(n_top_genes="all"))
    assert out.uns["preprocess"]["input"] == "log"
    cols = pd.Index(counts.adata.var_names).get_indexer(out.var_names)
    rows = pd.Index(counts.adata.obs_names).get_indexer(out.obs_names)
    np.testing.assert_allclose(out.X.toarray(), _lognorm(x)[rows][:, cols].toarray(), rtol=1e-6)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), x[rows][:, cols].toarray())


def test_counts_from_raw_become_the_layer_and_feed_the_mitochondrial_filter(counts):
    x = counts.adata.X
    logged = ad.AnnData(_lognorm(x).astype(np.float32), obs=counts.adata.obs.copy(), var=counts.adata.var.copy())
    logged.raw = ad.AnnData(x.copy(), var=counts.adata.var.copy())
    logged.layers["spliced"] = x.copy()  # other layers do not travel on
    mt = counts.adata.var_names.isin(MT_GENES)
    pct = 100 * np.asarray(x[:, mt].sum(axis=1)).ravel() / np.asarray(x.sum(axis=1)).ravel()
    limit = float(np.percentile(pct, 80))
    out = preprocess(logged, counts.priors, _cfg(n_top_genes="all", min_genes_per_cell=0, max_pct_mt=limit))
    info = out.uns["preprocess"]
    assert info["counts_from"] == "raw" and info["dropped"]["layers"] == ["spliced"] and info["dropped"]["raw"]
    assert out.raw is None and list(out.layers) == ["counts"]
    assert list(out.obs_names) == list(counts.adata.obs_names[pct <= limit])
    rows = pd.Index(counts.adata.obs_names).get_indexer(out.obs_names)
    cols = pd.Index(counts.adata.var_names).get_indexer(out.var_names)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), x[rows][:, cols].toarray())


def test_counts_are_normalised_and_kept_in_a_layer(counts):
    x = counts.adata.X
    out = preprocess(counts.expression(), counts.priors, _cfg(n_top_genes="all"))
    info = out.uns["preprocess"]
    assert info["applied"] and info["input"] == "counts" and info["counts_from"] == "X"
    assert sp.issparse(out.X) and out.X.format == "csr" and sp.issparse(out.layers["counts"])
    rows = pd.Index(counts.adata.obs_names).get_indexer(out.obs_names)
    cols = pd.Index(counts.adata.var_names).get_indexer(out.var_names)
    # As in scanpy's tutorials: cells and genes are filtered first, then each cell is normalised.
    np.testing.assert_allclose(out.X.toarray(), _lognorm(x[rows][:, cols]).toarray(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), x[rows][:, cols].toarray())


# ---------------------------------------------------------------------------------- QC


def test_qc_filters_cells_by_genes_and_mitochondria_then_genes_by_cells(counts):
    x = counts.adata.X
    genes = pd.Index(counts.adata.var_names)
    n_genes = np.diff(x.indptr)
    mt = genes.isin(MT_GENES)
    pct_mt = 100 * np.asarray(x[:, mt].sum(axis=1)).ravel() / np.asarray(x.sum(axis=1)).ravel()
    min_genes, max_mt, min_cells = int(np.percentile(n_genes, 20)), float(np.percentile(pct_mt, 90)), 10
    keep_cells = (n_genes >= min_genes) & (pct_mt <= max_mt)
    keep_genes = np.asarray((x[keep_cells] > 0).sum(axis=0)).ravel() >= min_cells

    out = preprocess(
        counts.expression(),  # preprocess subsets its input in place
        counts.priors,
        _cfg(min_genes_per_cell=min_genes, max_pct_mt=max_mt, min_cells_per_gene=min_cells, n_top_genes="all"),
    )
    assert list(out.obs_names) == list(counts.adata.obs_names[keep_cells])
    assert list(out.var_names) == list(genes[keep_genes])
    qc = out.uns["preprocess"]["qc"]
    assert qc["cells_dropped_mt"] == int(((n_genes >= min_genes) & (pct_mt > max_mt)).sum()) > 0
    assert qc["cells_dropped_min_genes"] == int((n_genes < min_genes).sum()) > 0
    assert qc["genes_dropped_min_cells"] == int((~keep_genes).sum()) > 0


def test_qc_that_removes_every_cell_says_which_threshold_and_file(counts):
    with pytest.raises(DataError, match=r"counts.h5ad: no cell passes QC.*lower preprocess.min_genes_per_cell"):
        preprocess(counts.expression(), counts.priors, _cfg(min_genes_per_cell=100_000))


# ---------------------------------------------------------------------------------- gene selection


def test_every_expressed_prior_tf_is_kept_plus_n_most_variable_other_genes(counts):
    import scanpy as sc

    priors = pd.concat(
        [counts.priors, pd.DataFrame({"tf": ["NOTMEASURED"], "target": [counts.priors["target"].iloc[0]]})],
        ignore_index=True,
    )
    silent = counts.priors["tf"].iloc[0]  # a prior TF with no counts at all: not expressed
    adata = counts.expression()
    x = adata.X.tolil()
    x[:, adata.var_names.get_loc(silent)] = 0
    adata.X = x.tocsr()
    adata.X.eliminate_zeros()
    n = 150
    out = preprocess(adata.copy(), priors, _cfg(n_top_genes=n))

    tfs = set(counts.priors["tf"]) - {silent}
    kept = set(out.var_names)
    assert tfs <= kept and silent not in kept
    info = out.uns["preprocess"]["genes"]
    assert info["tfs_kept"] == len(tfs) and info["hvgs_kept"] == n and out.n_vars == len(tfs) + n
    assert {"NOTMEASURED", silent} <= set(info["tfs_not_expressed_examples"])
    # The HVGs are the n other genes with the highest normalised dispersion (scanpy's seurat flavor).
    ref = preprocess(adata, counts.priors, _cfg(n_top_genes="all"))
    table = sc.pp.highly_variable_genes(ref, flavor="seurat", inplace=False)
    other = table.loc[~table.index.isin(list(tfs)), "dispersions_norm"].fillna(-np.inf)
    chosen = other.index.isin(list(kept))
    assert chosen.sum() == n and other[chosen].min() >= other[~chosen].max()
    # Labelled targets are not force-kept (BEELINE's selection never looks at the ground truth).
    dropped_targets = set(counts.priors["target"]) - kept - set(counts.priors["tf"])
    assert info["prior_targets_dropped"] == len(dropped_targets & set(ref.var_names)) > 0


def test_n_top_genes_all_keeps_every_expressed_gene(counts):
    expressed = np.asarray((counts.adata.X > 0).sum(axis=0)).ravel() >= 3
    out = preprocess(counts.expression(), counts.priors, _cfg(n_top_genes="all", min_genes_per_cell=0))
    assert out.n_vars == int(expressed.sum()) and out.uns["preprocess"]["genes"]["hvgs_kept"] == 0


def test_seurat_v3_without_scikit_misc_says_what_to_use(counts):
    import importlib.util

    if importlib.util.find_spec("skmisc") is not None:
        pytest.skip("scikit-misc is installed here")
    with pytest.raises(DataError, match="seurat_v3 needs the scikit-misc package.*use hvg_flavor: seurat"):
        preprocess(counts.expression(), counts.priors, _cfg(hvg_flavor="seurat_v3"))


# ---------------------------------------------------------------------------------- BEELINE


def _passes_through(ds: GRNDataset) -> None:
    before_x, before_features = np.array(ds.adata.X, copy=True), ds.zscored_features()
    out = preprocess(ds.expression(), ds.priors, PreprocessConfig(), source="beeline")
    assert out.uns["preprocess"]["applied"] is False and out.uns["preprocess"]["cell_features"] == "cells"
    assert not sp.issparse(out.X) and out.X.dtype == before_x.dtype
    np.testing.assert_array_equal(out.X, before_x)
    assert list(out.var_names) == ds.genes and list(out.obs_names) == list(ds.adata.obs_names)
    assert not out.layers and CELL_FEATURES_KEY not in out.varm
    np.testing.assert_array_equal(GRNDataset.from_parts(out, ds.priors).zscored_features(), before_features)
    assert GRNDataset.from_parts(out, ds.priors).expression_hash() == ds.expression_hash()


def test_beeline_directories_pass_through_unchanged(synthetic, beeline):
    _passes_through(synthetic)
    _passes_through(load_beeline(beeline("mDC")))


def test_mode_always_and_never_override_the_source(synthetic, counts):
    out = preprocess(synthetic.expression(), synthetic.priors, _cfg(mode="always", n_top_genes=10), source="beeline")
    assert out.uns["preprocess"]["applied"] and out.uns["preprocess"]["input"] == "log"
    assert out.n_vars == len(set(synthetic.priors["tf"])) + 10
    x = counts.adata.X.copy()
    out = preprocess(counts.adata, counts.priors, _cfg(mode="never"))
    assert not out.uns["preprocess"]["applied"] and (out.X != x).nnz == 0


# ---------------------------------------------------------------------------------- sparse == dense


@pytest.fixture
def small_matrix():
    rng = np.random.default_rng(3)
    x = sp.random(300, 120, density=0.08, format="csr", random_state=4, dtype=np.float64)
    x.data = np.round(x.data * 20).astype(np.float32) + 1
    x = x.astype(np.float32)
    x[:, 7] = 0  # a constant gene
    x.eliminate_zeros()
    genes = [f"G{i}" for i in range(120)]
    del rng
    return x, genes


def test_sparse_zscored_features_equal_the_dense_ones(small_matrix):
    x, genes = small_matrix
    priors = pd.DataFrame({"tf": ["G0"], "target": ["G1"]})
    dense = GRNDataset("d", ad.AnnData(x.toarray(), var=pd.DataFrame(index=genes)), priors).zscored_features()
    sparse = GRNDataset("s", ad.AnnData(x.copy(), var=pd.DataFrame(index=genes)), priors).zscored_features()
    assert sparse.shape == (120, 300) and sparse.dtype == np.float32
    np.testing.assert_allclose(sparse, dense, atol=1e-6)
    assert not dense[7].any()


def test_hashes_dense_as_before_and_sparse_from_the_csr_arrays(small_matrix):
    from materializers import AnnDataMaterializer

    x, genes = small_matrix
    dense = x.toarray()
    h = hashlib.sha256()
    hash_matrix(h, dense)
    assert h.hexdigest() == hashlib.sha256(np.ascontiguousarray(dense, dtype=np.float32).tobytes()).hexdigest()
    h = hashlib.sha256()
    hash_matrix(h, np.asfortranarray(dense.astype(np.float64)))  # layout and dtype do not matter
    assert h.hexdigest() == hashlib.sha256(dense.astype(np.float32).tobytes()).hexdigest()

    def digest(m):
        h = hashlib.sha256()
        hash_matrix(h, m)
        return h.hexdigest()

    wide = sp.csr_matrix((x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)), shape=x.shape)
    assert digest(x) == digest(wide) == digest(NoDense(x))
    changed = x.copy()
    changed.data[5] += 1
    assert digest(changed) != digest(x) and digest(x.T.tocsr()) != digest(x)

    m = AnnDataMaterializer("/tmp/unused")
    a = ad.AnnData(x.copy(), var=pd.DataFrame(index=genes))
    b = a.copy()
    b.layers["counts"] = x.copy()
    b.varm[CELL_FEATURES_KEY] = np.ones((120, 4), dtype=np.float32)
    assert m.compute_content_hash(a) != m.compute_content_hash(b)
    c = b.copy()
    c.varm[CELL_FEATURES_KEY][0, 0] = 2
    assert m.compute_content_hash(c) != m.compute_content_hash(b)


def test_pca_embedder_sparse_path_matches_the_dense_svd(small_matrix):
    from scregnet.embeddings.simple import PCAEmbedder, _implicit_pca

    x, genes = small_matrix
    dense = PCAEmbedder(10).embed(ad.AnnData(x.toarray(), var=pd.DataFrame(index=genes)))
    sparse = PCAEmbedder(10).embed(ad.AnnData(NoDense(x), var=pd.DataFrame(index=genes)))
    assert dense.metadata["solver"] == "full" and sparse.metadata["solver"] == "arpack"
    a, b = dense.vectors.astype(np.float64), sparse.vectors.astype(np.float64)
    sign = np.sign((a * b).sum(axis=0))  # components agree up to sign
    np.testing.assert_allclose(b * sign, a, atol=1e-5)
    assert sparse.metadata["explained_variance_ratio"] == pytest.approx(dense.metadata["explained_variance_ratio"])
    # A dense matrix too large for the full SVD takes the same implicit path.
    vectors, *_ = _implicit_pca(x.toarray(), 10)
    np.testing.assert_allclose(np.abs(vectors), np.abs(b), atol=1e-6)


def test_validation_gene_frame_from_sparse_values_equals_dense(small_matrix):
    from scregnet.validation import _gene_frame

    x, genes = small_matrix
    x = x.tolil()
    x[:, 3] = np.arange(2.0, 302.0)[:, None]  # every cell stored: its minimum is a stored value
    x = x.tocsr()
    x.data[[0, 10, 20]] = [np.nan, -2.0, np.inf]
    priors = pd.DataFrame({"tf": ["G0"], "target": ["G1"]})
    sparse = _gene_frame(GRNDataset("s", ad.AnnData(NoDense(x), var=pd.DataFrame(index=genes)), priors))
    dense = _gene_frame(GRNDataset("d", ad.AnnData(x.toarray(), var=pd.DataFrame(index=genes)), priors))
    pd.testing.assert_frame_equal(sparse, dense)
    csc = _gene_frame(GRNDataset("c", ad.AnnData(x.tocsc(), var=pd.DataFrame(index=genes)), priors))
    pd.testing.assert_frame_equal(csc, dense)
    assert sparse["n_nonfinite"].sum() == 2 and sparse["n_negative"].sum() == 1
    assert dense.loc[dense["gene"] == "G7", "min_value"].item() == 0
    col = x[:, 3].toarray().ravel()
    assert sparse.loc[sparse["gene"] == "G3", "min_value"].item() == col[np.isfinite(col)].min() != 0


def test_preprocessing_never_builds_a_dense_cells_by_genes_matrix(tmp_path):
    """4,000 cells x 8,000 genes at 1 % non-zero: dense float32 would be 128 MB, the CSR ~2.5 MB."""
    from scregnet.embeddings.simple import PCAEmbedder
    from scregnet.validation import _gene_frame

    cfg = _cfg(min_genes_per_cell=10, n_top_genes=300, cell_features="metacells", n_metacells=100)
    # Warm up first: imports and numba's compiled functions would count as allocations.
    warm = write_counts_h5ad(tmp_path / "w.h5ad", 300, 1000, n_tfs=20, seed=2)
    w = load_h5ad(warm["h5ad"], [warm["priors"]])
    PCAEmbedder(4).embed(w.adata)
    preprocess(w.adata, w.priors, cfg.model_copy(update={"n_top_genes": 50, "n_metacells": 20}))

    info = write_counts_h5ad(tmp_path / "m.h5ad", 4000, 8000, n_tfs=40, density=0.01, seed=2)
    ds = load_h5ad(info["h5ad"], [info["priors"]])
    dense_bytes = ds.adata.n_obs * ds.adata.n_vars * 4
    tracemalloc.start()
    try:
        _gene_frame(ds)
        ds.expression_hash()
        PCAEmbedder(16).embed(ds.adata)
        out = preprocess(ds.adata, ds.priors, cfg)
        GRNDataset.from_parts(out, ds.priors).zscored_features()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.n_obs == 4000 and out.uns["preprocess"]["cell_features"] == "metacells"
    assert peak < dense_bytes / 5, f"peak {peak / 1e6:.1f} MB vs dense {dense_bytes / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------- metacells


def test_metacell_features_are_genes_by_k_and_keep_the_coexpression(tmp_path):
    info = write_counts_h5ad(tmp_path / "m.h5ad", 2500, 1500, n_tfs=30, seed=5)
    ds = load_h5ad(info["h5ad"], [info["priors"]])
    auto = _cfg(n_top_genes=300, auto_max_cells=1000, n_metacells=80)
    out = preprocess(ds.adata, ds.priors, auto)
    assert out.uns["preprocess"]["cell_features"] == "metacells" and out.uns["preprocess"]["n_cell_features"] == 80
    profiles = out.varm[CELL_FEATURES_KEY]
    assert profiles.shape == (out.n_vars, 80)
    labels = out.obs["metacell"].to_numpy()
    members = labels == labels[0]
    np.testing.assert_allclose(profiles[:, labels[0]], np.asarray(out.X[members].mean(axis=0)).ravel(), rtol=1e-5)

    features = GRNDataset.from_parts(out, ds.priors).zscored_features()
    assert features.shape == (out.n_vars, 80)
    full = np.nan_to_num(np.corrcoef(out.X.toarray().T))  # test-sized: the cells' own co-expression
    meta = np.nan_to_num(np.corrcoef(features))
    upper = np.triu_indices(out.n_vars, 1)
    strong = np.abs(full[upper]) >= np.quantile(np.abs(full[upper]), 0.99)
    # The strongest co-expressed pairs over cells are co-expressed the same way over metacells ...
    assert (np.sign(full[upper][strong]) == np.sign(meta[upper][strong])).mean() > 0.95
    assert np.corrcoef(full[upper][strong], meta[upper][strong])[0, 1] > 0.8
    # ... and metacell co-expression finds the planted TF -> target pairs as well as the cells' does.
    from sklearn.metrics import roc_auc_score

    genes = pd.Index(out.var_names)
    truth = pd.read_csv(info["truth"])
    truth = truth[truth["Gene1"].isin(genes) & truth["Gene2"].isin(genes)]
    pairs = np.array([(genes.get_loc(a), genes.get_loc(b)) for a, b in zip(truth["Gene1"], truth["Gene2"])])
    others = np.random.default_rng(0).integers(0, out.n_vars, size=(5000, 2))
    others = others[others[:, 0] != others[:, 1]]
    y = np.r_[np.ones(len(pairs)), np.zeros(len(others))]

    def auroc(r):
        return roc_auc_score(y, np.abs(np.r_[r[pairs[:, 0], pairs[:, 1]], r[others[:, 0], others[:, 1]]]))

    assert len(pairs) > 100 and auroc(meta) > 0.7 and auroc(meta) > auroc(full) - 0.03

    small = preprocess(
        load_h5ad(info["h5ad"], [info["priors"]]).adata, ds.priors, auto.model_copy(update={"auto_max_cells": 5000})
    )
    assert small.uns["preprocess"]["cell_features"] == "cells" and CELL_FEATURES_KEY not in small.varm


def test_metacell_profiles_are_exact_means_on_dense_input():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(loc, 0.1, size=(20, 5)) for loc in (0.0, 5.0, 10.0)])
    profiles, labels = metacell_profiles(x, 3, n_pcs=2)
    assert profiles.shape == (5, 3) and len(np.unique(labels)) == 3
    for k in range(3):
        np.testing.assert_allclose(profiles[:, k], x[labels == k].mean(axis=0), rtol=1e-6)
    assert (np.bincount(labels) == 20).all()  # three well-separated groups are found


# ---------------------------------------------------------------------------------- generator


def test_generated_counts_look_like_a_10x_experiment(tmp_path):
    info = write_counts_h5ad(tmp_path / "g.h5ad", 1200, 4000, n_tfs=40, seed=0, gene_ids="ensembl", chunk_cells=256)
    adata = ad.read_h5ad(info["h5ad"])
    x = adata.X
    assert sp.issparse(x) and x.format == "csr" and x.dtype == np.float32 and x.shape == (1200, 4000)
    assert (x.data == np.round(x.data)).all() and (x.data > 0).all()
    assert 0.045 < x.nnz / (1200 * 4000) < 0.075
    library = np.asarray(x.sum(axis=1)).ravel()
    assert np.percentile(library, 95) / np.percentile(library, 5) > 3  # several-fold spread
    means = np.asarray(x.mean(axis=0)).ravel()
    assert means.max() > 50 * np.median(means)  # heavy-tailed gene means
    assert all(re.fullmatch(r"ENSG\d{11}\.\d+", g) for g in adata.var_names)
    symbols = set(adata.var["gene_symbols"])
    priors = pd.read_csv(info["priors"])
    assert list(priors.columns) == ["tf", "target", "score"] and set(priors["tf"]) <= symbols
    assert priors["tf"].nunique() > 30 and set(MT_GENES) <= symbols

    # The planted network shows in the data: true TF -> target pairs are more correlated than random ones.
    sym = pd.Index(adata.var["gene_symbols"])
    z = np.corrcoef(_lognorm(x).toarray().T)
    truth = pd.read_csv(info["truth"])
    pairs = np.array([(sym.get_loc(a), sym.get_loc(b)) for a, b in zip(truth["Gene1"], truth["Gene2"])])
    rng = np.random.default_rng(0)
    random_pairs = rng.integers(0, 4000, size=(5000, 2))
    true_r = np.nan_to_num(np.abs(z[pairs[:, 0], pairs[:, 1]])).mean()
    random_r = np.nan_to_num(np.abs(z[random_pairs[:, 0], random_pairs[:, 1]])).mean()
    assert true_r > 2 * random_r, (true_r, random_r)


def test_preprocess_step_outputs_what_train_consumes(counts, tmp_path):
    from materializers import AnnDataMaterializer
    from scregnet.config import RunConfig
    from steps.preprocess.preprocess import preprocess as step

    config = RunConfig.model_validate(
        {
            "data": {"h5ad": str(tmp_path / "x.h5ad"), "priors": [str(tmp_path / "p.csv")]},
            "preprocess": {**_cfg(cell_features="metacells", n_metacells=40).model_dump()},
        }
    )
    out = step.entrypoint(counts.expression(), counts.priors, config)
    m = AnnDataMaterializer(str(tmp_path / "artifact"))
    m.save(out)
    again = m.load(ad.AnnData)
    assert sp.issparse(again.X) and sp.issparse(again.layers["counts"])
    assert m.compute_content_hash(again) == m.compute_content_hash(out)
    ds = GRNDataset.from_parts(again, counts.priors)
    assert ds.zscored_features().shape == (again.n_vars, 40)
    assert again.uns["preprocess"]["cell_features"] == "metacells"


def test_geneformer_counts_transform_ranks_the_counts_layer(counts):
    from scregnet.embeddings.geneformer import expression_matrix

    out = preprocess(counts.expression(), counts.priors, _cfg(n_top_genes=50))
    assert expression_matrix(out, "counts") is out.layers["counts"]
    assert expression_matrix(out, "none") is out.X  # values as given: the log-normalised X
    assert expression_matrix(counts.adata, "counts") is counts.adata.X  # no layer: X

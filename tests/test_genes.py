"""Gene identifiers (scregnet.genes): symbols case-insensitively, Ensembl IDs with or without
version, a var column of symbols, made-unique suffixes, duplicates merged by a stated rule."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scregnet.data import load_h5ad
from scregnet.errors import DataError
from scregnet.genes import canonical_gene_names, canonicalize_priors, gene_aliases, harmonize_genes
from scregnet.validation import validate_dataset


def counts_adata(var_names, n_cells: int = 40, seed: int = 0, var: dict | None = None) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    x = sp.random(n_cells, len(var_names), density=0.4, random_state=rng, format="csr", dtype=np.float32)
    x.data = np.ceil(x.data * 20).astype(np.float32)  # integer counts
    frame = pd.DataFrame(var or {}, index=pd.Index(list(var_names)))
    return ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=frame)


def test_canonical_names_strip_versions_and_case():
    names = ["ENSG00000141510.17", "ensmusg00000024406.3", "Pou5f1", " tp53 ", "ENSG00000182378.14_PAR_Y"]
    assert list(canonical_gene_names(names)) == [
        "ENSG00000141510",
        "ENSMUSG00000024406",
        "POU5F1",
        "TP53",
        "ENSG00000182378_PAR_Y",  # the PAR_Y copy stays a gene of its own
    ]


def test_versioned_ensembl_without_symbols_keep_ids():
    adata = counts_adata(["ENSG00000141510.17", "ENSG00000111640.15", "ENSMUSG00000024406.3"])
    out, report = harmonize_genes(adata)
    assert list(out.var_names) == ["ENSG00000141510", "ENSG00000111640", "ENSMUSG00000024406"]
    assert report["id_type"] == "ensembl" and report["versions_stripped"] == 3
    assert list(out.var["original_id"]) == ["ENSG00000141510.17", "ENSG00000111640.15", "ENSMUSG00000024406.3"]


@pytest.mark.parametrize("column", ["gene_symbols", "feature_name"])
def test_ensembl_var_names_use_the_symbol_column(column):
    ids = ["ENSG00000141510.17", "ENSG00000111640.15", "ENSG00000000003.15"]
    symbols = pd.Categorical(["TP53", "Gapdh", None])  # CELLxGENE stores feature_name as a categorical
    out, report = harmonize_genes(counts_adata(ids, var={column: symbols}))
    assert list(out.var_names) == ["TP53", "GAPDH", "ENSG00000000003"]  # no symbol: keeps its ID
    assert report["symbols_column"] == column and report["unmapped"] == 1
    assert report["unmapped_examples"] == ["ENSG00000000003.15"]
    assert out.var.loc["GAPDH", "original_id"] == "ENSG00000111640.15"


def test_symbols_column_given_by_name_and_missing_column():
    adata = counts_adata(["ENSG00000141510", "ENSG00000111640"], var={"hgnc": ["TP53", "GAPDH"], "symbol": ["X", "Y"]})
    out, report = harmonize_genes(adata, symbols_column="hgnc")
    assert list(out.var_names) == ["TP53", "GAPDH"] and report["symbols_column"] == "hgnc"
    with pytest.raises(DataError, match=r"cells.h5ad: no var column 'gene_sym' for gene symbols.*\['hgnc', 'symbol'\]"):
        harmonize_genes(
            counts_adata(["A", "B"], var={"hgnc": ["A", "B"], "symbol": ["A", "B"]}),
            symbols_column="gene_sym",
            source="cells.h5ad",
        )


def test_made_unique_suffixes_merge_but_real_hyphenated_symbols_stay():
    names = ["TBCE", "NKX2-1", "HLA-A", "NKX2-2", "TBCE-1", "MATR3", "MATR3-1", "MATR3-2", "KRTAP1-1", "Pou5f1"]
    adata = counts_adata(names)
    x = adata.X.toarray()
    out, report = harmonize_genes(adata)
    assert list(out.var_names) == ["TBCE", "NKX2-1", "HLA-A", "NKX2-2", "MATR3", "KRTAP1-1", "POU5F1"]
    assert report["made_unique"] == 3 and report["merged_genes"] == 2 and report["merged_columns"] == 5
    assert report["merge_rule"] == "sum (raw counts)"
    assert out.var.loc["MATR3", "original_id"] == "MATR3;MATR3-1;MATR3-2"
    merged = out.X.toarray()
    np.testing.assert_array_equal(merged[:, 0], x[:, 0] + x[:, 4])  # TBCE = TBCE + TBCE-1
    np.testing.assert_array_equal(merged[:, 4], x[:, 5] + x[:, 6] + x[:, 7])
    np.testing.assert_array_equal(merged[:, 1], x[:, 1])  # NKX2-1 untouched
    assert merged.sum() == x.sum()


def test_suffix_before_its_base_is_not_a_made_unique_copy():
    # anndata leaves the first occurrence unsuffixed, so X-1 before X is a different gene.
    out, report = harmonize_genes(counts_adata(["RNU1-1", "RNU1"]))
    assert list(out.var_names) == ["RNU1-1", "RNU1"] and report["made_unique"] == 0


def test_duplicates_after_mapping_sum_counts_and_stay_sparse():
    ids = ["ENSG01.1", "ENSG00000000001.3", "ENSG00000000002.1", "ENSG00000000003.1", "ENSG00000000004.2"]
    symbols = ["PAX6", "PAX6", "Pax6", "SOX2", "sox2"]  # mouse and human case: one gene each
    adata = counts_adata(ids, var={"gene_symbols": symbols})
    adata.layers["counts"] = adata.X.copy()
    x = adata.X.toarray()
    out, report = harmonize_genes(adata)
    assert list(out.var_names) == ["PAX6", "SOX2"]
    assert sp.issparse(out.X) and out.X.format == "csr" and sp.issparse(out.layers["counts"])
    np.testing.assert_array_equal(out.X.toarray()[:, 0], x[:, :3].sum(axis=1))
    np.testing.assert_array_equal(out.X.toarray()[:, 1], x[:, 3:].sum(axis=1))
    np.testing.assert_array_equal(out.layers["counts"].toarray(), out.X.toarray())
    assert report["merged_genes"] == 2 and report["merged_columns"] == 5
    assert report["merged_examples"][0] == "PAX6 <- ENSG01.1;ENSG00000000001.3;ENSG00000000002.1"


def test_log_data_keeps_the_duplicate_with_the_highest_total():
    adata = counts_adata(["A", "B", "A-1", "C"])
    adata.X = adata.X.multiply(0.37).tocsr()  # not counts any more
    x = adata.X.toarray()
    x[:, 2] = 2 * x[:, 0] + 0.5  # the made-unique copy has the higher total, so it is kept (not the first)
    adata.X = sp.csr_matrix(x)
    out, report = harmonize_genes(adata)
    np.testing.assert_allclose(out.X.toarray()[:, 0], x[:, 2])
    np.testing.assert_allclose(out.X.toarray()[:, 1:], x[:, [1, 3]])
    assert report["merge_rule"] == "keep highest total (not counts)"


def test_raw_is_renamed_and_merged_like_x():
    adata = counts_adata(
        ["ENSG00000000001.1", "ENSG00000000002.1", "ENSG00000000003.1"], var={"gene_symbols": ["A", "A", "B"]}
    )
    adata.raw = adata.copy()
    out, _ = harmonize_genes(adata)
    assert list(out.raw.var_names) == ["A", "B"]
    np.testing.assert_array_equal(out.raw.X.toarray(), out.X.toarray())


def test_nothing_to_merge_keeps_the_same_matrix():
    adata = counts_adata(["tp53", "Gapdh"])
    x = adata.X
    out, report = harmonize_genes(adata)
    assert out.X is x and list(out.var_names) == ["TP53", "GAPDH"] and report["merged_genes"] == 0


def test_priors_naming_ensembl_ids_meet_symbol_expression():
    # Cell Ranger: symbols as var_names, Ensembl IDs in var["gene_ids"].
    adata = counts_adata(["Tp53", "Gapdh"], var={"gene_ids": ["ENSMUSG00000059552", "ENSMUSG00000057666"]})
    out, _ = harmonize_genes(adata)
    priors = pd.DataFrame({"tf": ["ENSMUSG00000059552.9", "tp53"], "target": ["ENSMUSG00000057666.1", "Gapdh"]})
    canon = canonicalize_priors(priors, gene_aliases(out))
    assert list(zip(canon["tf"], canon["target"])) == [("TP53", "GAPDH"), ("TP53", "GAPDH")]


def test_load_h5ad_harmonises_genes_and_reads_gmt(tmp_path):
    ids = [f"ENSG{i:011d}.{i % 5 + 1}" for i in range(30)]
    symbols = [f"GENE{i}" for i in range(30)]
    symbols[29] = "GENE0"  # a duplicate after mapping
    adata = counts_adata(ids, var={"feature_name": symbols})
    adata.var["feature_name"] = adata.var["feature_name"].astype("category")
    adata.write_h5ad(tmp_path / "cells.h5ad")
    (tmp_path / "lib.gmt").write_text("Gene0 ChIP\t\tgene1\tGENE2\nGENE3_123_ChIP-Seq\t\tENSG00000000004.9\n")
    ds = load_h5ad(tmp_path / "cells.h5ad", [tmp_path / "lib.gmt"])
    assert ds.adata.n_vars == 29 and ds.genes[:3] == ["GENE0", "GENE1", "GENE2"]
    graph = ds.label_graph()
    edges = {(graph.genes[a], graph.genes[b]) for a, b in graph.edges}
    assert edges == {("GENE0", "GENE1"), ("GENE0", "GENE2"), ("GENE3", "GENE4")}  # Ensembl target mapped
    ds.adata.write_h5ad(tmp_path / "roundtrip.h5ad")  # the report in uns stays writable
    report = validate_dataset(ds, min_cells=10, min_genes=20)
    assert any("cells.h5ad: 1 gene(s) were duplicated after mapping" in w and "GENE0 <- " in w for w in report.warnings)
    with pytest.raises(DataError, match=r"cells.h5ad: no var column 'nope'"):
        load_h5ad(tmp_path / "cells.h5ad", [tmp_path / "lib.gmt"], symbols_column="nope")

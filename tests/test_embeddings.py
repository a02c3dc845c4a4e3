import numpy as np
import pandas as pd
import pytest
import torch

from scregnet.config import EmbedderConfig
from scregnet.embeddings import GeneEmbedding, build_embedder
from scregnet.errors import DataError


def test_none_embedder_is_empty(synthetic):
    emb = build_embedder(EmbedderConfig(kind="none")).embed(synthetic.adata)
    assert emb.dim == 0 and emb.genes == []


def test_pca_embedder_gives_every_gene_orthogonal_components(synthetic):
    emb = build_embedder(EmbedderConfig(kind="pca", dim=8)).embed(synthetic.adata)
    assert emb.genes == list(synthetic.adata.var_names) and emb.vectors.shape == (80, 8)
    gram = emb.vectors.T @ emb.vectors
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-3 * np.abs(np.diag(gram)).max()  # principal axes are orthogonal
    assert np.all(np.diff(np.diag(gram)) <= 1e-4)  # ordered by variance explained


def test_align_zero_fills_genes_without_a_vector():
    emb = GeneEmbedding(["A", "B"], np.array([[1.0, 2.0], [3.0, 4.0]]))
    matrix, found = emb.align(["B", "C", "A"])
    np.testing.assert_array_equal(matrix, [[3, 4], [0, 0], [1, 2]])
    np.testing.assert_array_equal(found, [True, False, True])
    with pytest.raises(ValueError, match="unique"):
        GeneEmbedding(["A", "A"], np.zeros((2, 2)))


def test_save_load_round_trip_and_checksum(tmp_path):
    emb = GeneEmbedding(["A", "B"], np.random.default_rng(0).normal(size=(2, 3)), {"embedder": "pca"})
    emb.save(tmp_path / "e")
    again = GeneEmbedding.load(tmp_path / "e")
    np.testing.assert_array_equal(again.vectors, emb.vectors)
    assert again.metadata["embedder"] == "pca"
    np.save(tmp_path / "e" / "vectors.npy", emb.vectors + 1)
    with pytest.raises(ValueError, match="checksum mismatch"):
        GeneEmbedding.load(tmp_path / "e")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".pt"])
def test_precomputed_formats(synthetic, tmp_path, suffix):
    genes = list(synthetic.adata.var_names)[:10]
    table = pd.DataFrame(np.arange(30, dtype=np.float32).reshape(10, 3), index=pd.Index(genes, name="gene"))
    path = tmp_path / f"emb{suffix}"
    if suffix == ".parquet":
        table.columns = table.columns.astype(str)
        table.to_parquet(path)
    elif suffix == ".pt":
        torch.save({g: torch.tensor(table.loc[g].to_numpy()) for g in genes}, path)
    else:
        table.to_csv(path, sep="\t" if suffix == ".tsv" else ",")
    emb = build_embedder(EmbedderConfig(kind="precomputed", path=path)).embed(synthetic.adata)
    matrix, found = emb.align(list(synthetic.adata.var_names))
    assert found.sum() == 10 and emb.metadata["coverage"] == pytest.approx(10 / 80)
    np.testing.assert_array_equal(matrix[:10], table.to_numpy())


def test_precomputed_authors_hesc_embeddings(tmp_path):
    from tests.conftest import shared_path

    path = shared_path("scfm", "geneformer", "precomputed_scregnet_hESC_TFs500", "fm_embeddings.pt")
    emb = build_embedder(EmbedderConfig(kind="precomputed", path=path)).embed()
    assert emb.vectors.shape == (871, 896)


def test_precomputed_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_embedder(EmbedderConfig(kind="precomputed", path=tmp_path / "nope.csv")).embed()
    bad = tmp_path / "bad.csv"
    bad.write_text("gene,d0\nA,1\nB,x\n")
    with pytest.raises(DataError, match="bad.csv"):
        build_embedder(EmbedderConfig(kind="precomputed", path=bad)).embed()

"""Precomputed foundation-model outputs -> GeneEmbedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scregnet.embeddings.adapters import load_precomputed, mean_over_cells
from scregnet.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FM_PT = SHARED / "scfm" / "geneformer" / "precomputed_scregnet_hESC_TFs500" / "fm_embeddings.pt"
SCF_INDEX = SHARED / "scfm" / "scfoundation" / "OS_scRNA_gene_index.19264.tsv"


def test_chunked_mean_equals_full_mean(tmp_path: Path):
    arr = np.random.default_rng(0).normal(size=(11, 6, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    got = mean_over_cells(mm, chunk_bytes=2 * 6 * 3 * 4)  # 2 cells per chunk, 6 chunks
    np.testing.assert_allclose(got, arr.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(mean_over_cells(mm, np.array([4, 1]), chunk_bytes=1), arr[:, [4, 1]].mean(0), rtol=1e-6)


def test_scbert_drops_the_extra_position(tmp_path: Path):
    arr = np.random.default_rng(1).normal(size=(5, 4, 200)).astype(np.float32)
    arr[:, 3] = 1e6  # the extra (CLS) position must not leak into any gene
    np.save(tmp_path / "scbert.npy", arr)
    (tmp_path / "genes.txt").write_text("sox2\nPOU5F1\nNANOG\n")
    emb = load_precomputed(tmp_path / "scbert.npy", "scbert", tmp_path / "genes.txt")
    assert emb.genes == ["SOX2", "POU5F1", "NANOG"] and emb.vectors.shape == (3, 200)
    np.testing.assert_allclose(emb.vectors, arr[:, :3].astype(np.float64).mean(0), atol=1e-6)
    assert emb.metadata["n_cells"] == 5 and emb.metadata["format"] == "scbert"
    sub = load_precomputed(tmp_path / "scbert.npy", "scbert", tmp_path / "genes.txt", genes={"nanog"})
    assert sub.genes == ["NANOG"]
    (tmp_path / "genes.txt").write_text("SOX2\nPOU5F1\n")
    with pytest.raises(DataError, match=r"scbert\.npy.*\(cells, 3, 200\)"):
        load_precomputed(tmp_path / "scbert.npy", "scbert", tmp_path / "genes.txt")
    with pytest.raises(DataError, match="gene list"):
        load_precomputed(tmp_path / "scbert.npy", "scbert", None)


def test_scfoundation_maps_positions_through_the_index(tmp_path: Path):
    names = ["A1", "B2", "C3", "D4", "E5"]
    order = [3, 0, 4, 1, 2]  # gene_name -> position, not in file order
    pd.DataFrame({"gene_name": names, "index": order}).to_csv(tmp_path / "idx.tsv", sep="\t", index=False)
    arr = np.random.default_rng(2).normal(size=(9, 7, 4)).astype(np.float32)  # 5 genes + T, S
    np.save(tmp_path / "scf.npy", arr)
    emb = load_precomputed(tmp_path / "scf.npy", "scfoundation", tmp_path / "idx.tsv", chunk_bytes=64)
    assert emb.genes == ["B2", "D4", "E5", "A1", "C3"]  # position order
    np.testing.assert_allclose(emb.vectors[emb.genes.index("A1")], arr[:, 3].astype(np.float64).mean(0), atol=1e-6)
    sub = load_precomputed(tmp_path / "scf.npy", "scfoundation", tmp_path / "idx.tsv", genes=["c3", "B2"])
    assert sub.genes == ["B2", "C3"]
    np.testing.assert_allclose(sub.vectors[1], arr[:, 4].astype(np.float64).mean(0), atol=1e-6)
    np.save(tmp_path / "bad.npy", arr[:, :6])
    with pytest.raises(DataError, match=r"bad\.npy.*\(cells, 5, 512\)"):
        load_precomputed(tmp_path / "bad.npy", "scfoundation", tmp_path / "idx.tsv")


@pytest.mark.skipif(not SCF_INDEX.is_file(), reason=f"scFoundation gene index not found at {SCF_INDEX}")
def test_scfoundation_real_gene_index(tmp_path: Path):
    arr = np.lib.format.open_memmap(tmp_path / "scf.npy", mode="w+", dtype=np.float32, shape=(2, 19264, 2))
    arr[:] = np.arange(19264, dtype=np.float32)[None, :, None]
    arr.flush()
    emb = load_precomputed(tmp_path / "scf.npy", "scfoundation", SCF_INDEX, genes=["A2M", "A1BG"])
    assert emb.genes == ["A1BG", "A2M"]
    np.testing.assert_array_equal(emb.vectors[:, 0], [0.0, 2.0])


@pytest.mark.skipif(not FM_PT.is_file(), reason=f"scRegNet reference embeddings not found at {FM_PT}")
def test_authors_torch_dict():
    emb = load_precomputed(FM_PT, "auto", None)
    assert len(emb.genes) == 871 and emb.dim == 896 and emb.metadata["format"] == "torch"
    ref = torch.load(FM_PT, weights_only=True)
    np.testing.assert_array_equal(emb.vectors[emb.genes.index("SIRT1")], ref["SIRT1"].numpy())
    assert len(emb.metadata["file"]["sha256"]) == 64


class _NotATensor:
    pass


def test_torch_refuses_arbitrary_pickles_and_bad_shapes(tmp_path: Path):
    torch.save({"SOX2": _NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="weights_only"):
        load_precomputed(tmp_path / "evil.pt", "torch", None)
    torch.save({"SOX2": torch.zeros(4), "NANOG": torch.zeros(5)}, tmp_path / "ragged.pt")
    with pytest.raises(DataError, match="NANOG"):
        load_precomputed(tmp_path / "ragged.pt", "torch", None)
    torch.save({"sox2": torch.ones(3), "nanog": torch.zeros(3)}, tmp_path / "ok.pth")
    emb = load_precomputed(tmp_path / "ok.pth", "auto", None, genes=["SOX2"])
    assert emb.genes == ["SOX2"] and emb.vectors.tolist() == [[1.0, 1.0, 1.0]]


def test_ensembl_csv_with_mapping(tmp_path: Path):
    emb_df = pd.DataFrame(
        [[1, 2], [3, 4], [5, 6], [7, 8], [9, 9]],
        index=["<cls>", "ENSG01", "ENSG02", "ENSG03", "<eos>"],
        columns=["0", "1"],
    )
    emb_df.to_csv(tmp_path / "gene_embeddings.csv")
    pd.DataFrame({"gene": ["sox2", "NANOG", "OCT4"], "ensembl_id": ["ENSG01", "ENSG02", "ENSG02"]}).to_csv(
        tmp_path / "map.csv", index=False
    )
    emb = load_precomputed(tmp_path / "gene_embeddings.csv", "ensembl_csv", tmp_path / "map.csv")
    assert emb.genes == ["SOX2", "NANOG", "OCT4"]  # ENSG03 unmapped, special rows dropped
    assert emb.vectors.tolist() == [[3, 4], [5, 6], [5, 6]]
    assert emb.metadata["unmapped_ids"] == 1
    with pytest.raises(DataError, match="mapping"):
        load_precomputed(tmp_path / "gene_embeddings.csv", "ensembl_csv", None)
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(tmp_path / "nomap.csv", index=False)
    with pytest.raises(DataError, match="Ensembl"):
        load_precomputed(tmp_path / "gene_embeddings.csv", "ensembl_csv", tmp_path / "nomap.csv")


def test_auto_format_and_unknown_format(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 3), dtype=np.float32))
    with pytest.raises(DataError, match="scbert' or 'scfoundation"):
        load_precomputed(tmp_path / "x.npy", "auto", None)
    with pytest.raises(ValueError, match="unknown embedding format"):
        load_precomputed(tmp_path / "x.npy", "word2vec", None)
    with pytest.raises(DataError, match="not found"):
        load_precomputed(tmp_path / "missing.pt", "auto", None)
    pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=pd.Index(["sox2", "NANOG"], name="gene")).to_csv(tmp_path / "t.csv")
    emb = load_precomputed(tmp_path / "t.csv", "auto", None, genes=["NANOG"])
    assert emb.genes == ["NANOG"] and emb.vectors.tolist() == [[3.0, 4.0]] and emb.metadata["format"] == "table"

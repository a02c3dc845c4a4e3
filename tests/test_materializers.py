"""Each materializer round-trips its artifact through a directory in the artifact store."""

import numpy as np

from scregnet.embeddings import GeneEmbedding
from scregnet.splits import genelink_split


def _round_trip(materializer_cls, data, tmp_path):
    m = materializer_cls(str(tmp_path / "artifact"))
    m.save(data)
    assert not list((tmp_path / "artifact").rglob("*.pkl"))
    return m.load(type(data))


def test_anndata_round_trip_and_content_hash_ignores_provenance(synthetic, tmp_path):
    from materializers import AnnDataMaterializer

    adata = synthetic.expression()
    again = _round_trip(AnnDataMaterializer, adata, tmp_path)
    np.testing.assert_array_equal(again.X, adata.X)
    assert list(again.var_names) == list(adata.var_names) and again.uns["dataset"] == synthetic.name
    m = AnnDataMaterializer(str(tmp_path / "x"))
    moved = adata.copy()
    moved.uns["sources"] = {"expression": "/elsewhere.csv"}
    assert m.compute_content_hash(moved) == m.compute_content_hash(adata)  # same values, other path
    moved.X[0, 0] += 1
    assert m.compute_content_hash(moved) != m.compute_content_hash(adata)


def test_embedding_split_and_model_round_trips(synthetic, fast_config, tmp_path):
    from materializers import GeneEmbeddingMaterializer, ModelBundleMaterializer, SplitMaterializer
    from scregnet.experiment import run_experiment

    emb = GeneEmbedding(["A", "B"], np.ones((2, 3)), {"embedder": "pca"})
    assert _round_trip(GeneEmbeddingMaterializer, emb, tmp_path / "e").content_hash() == emb.content_hash()
    split = genelink_split(synthetic.label_graph(), seed=2)
    again = _round_trip(SplitMaterializer, split, tmp_path / "s")
    assert again.hash() == split.hash() and (again.protocol, again.seed) == ("genelink", 2)
    fast_config.train.max_epochs = 5
    res = run_experiment(synthetic, fast_config, None, seed=0)
    model = _round_trip(ModelBundleMaterializer, res.model, tmp_path / "m")
    np.testing.assert_allclose(model.score_indices(split.test), res.model.score_indices(split.test), rtol=1e-6)

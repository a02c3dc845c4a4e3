"""The embed steps' logic (via `.entrypoint`, no pipeline run): sharded fan-out == single step."""

from __future__ import annotations

import numpy as np

from scregnet.config import EmbedderConfig, GeneformerConfig
from tests.test_geneformer import make_dicts, random_adata, tiny_model


def test_sharded_steps_equal_the_single_embed_step(tmp_path):
    from materializers import GeneSumsMaterializer
    from steps.embed.embed import embed
    from steps.embed.shards import add_gene_sums, embed_shard, finalize_embedding

    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir, safe_serialization=True)
    dicts = make_dicts(tmp_path / "dicts")
    adata = random_adata(n_cells=15)
    cfg = EmbedderConfig(
        kind="geneformer",
        geneformer=GeneformerConfig(model=str(model_dir), dictionaries=dicts, device="cpu", n_shards=3),
    )

    single = embed.entrypoint(
        adata, cfg.model_copy(update={"geneformer": cfg.geneformer.model_copy(update={"n_shards": 1})})
    )
    parts = [embed_shard.entrypoint(adata, cfg, shard=i) for i in range(3)]
    assert sum(p.n_cells for p in parts) == 15
    # the shard artifact survives a round trip through its materializer unchanged
    mat = GeneSumsMaterializer(str(tmp_path / "artifact"))
    mat.save(parts[1])
    parts[1] = mat.load(type(parts[1]))
    total = add_gene_sums.entrypoint(add_gene_sums.entrypoint(parts[0], parts[1]), parts[2])
    merged = finalize_embedding.entrypoint(total)
    assert merged.genes == single.genes
    np.testing.assert_allclose(merged.vectors, single.vectors, rtol=1e-5, atol=1e-6)
    assert merged.metadata["n_shards"] == 3 and merged.metadata["n_cells"] == 15


def test_embed_cli_writes_a_gene_table(tmp_path, synthetic_dir):
    import pandas as pd
    from click.testing import CliRunner

    from scregnet.cli import main
    from scregnet.data import load_beeline

    genes = list(load_beeline(synthetic_dir).adata.var_names)
    dicts = tmp_path / "dicts"
    make_dicts(dicts, n_genes=len(genes))
    # map the synthetic symbols onto the hand-made dictionary's Ensembl IDs
    import pickle

    mapping = {g: f"ENSG{i:011d}" for i, g in enumerate(genes[:-5])}  # 5 genes stay unmapped
    with open(dicts / "ensembl_mapping_dict_gc95M.pkl", "wb") as fh:
        pickle.dump(mapping, fh)
    model_dir = tmp_path / "model"
    tiny_model(n_genes=len(genes)).save_pretrained(model_dir, safe_serialization=True)
    for out, precision, used, attention, resolved in (
        (tmp_path / "genes.csv", "auto", "fp32", "auto", "packed"),  # auto on CPU: packed
        (tmp_path / "genes.parquet", "bf16", "bf16", "sdpa", "sdpa"),
    ):
        result = CliRunner().invoke(
            main,
            [
                "embed",
                "--data",
                str(synthetic_dir),
                "--model",
                str(model_dir),
                "--dictionaries",
                str(dicts),
                "--device",
                "cpu",
                "--precision",
                precision,
                "--attention",
                attention,
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        assert f'"precision": "{used}"' in result.output
        assert f'"attention": "{resolved}"' in result.output
        table = pd.read_csv(out, index_col=0) if out.suffix == ".csv" else pd.read_parquet(out)
        assert table.shape[1] == 32 and set(table.index) <= set(genes[:-5])
        assert len(table) >= len(genes) - 5 - 10  # genes never expressed in any cell get no vector
        assert "genes received no vector" in result.output

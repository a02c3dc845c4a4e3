"""Geneformer embedder: tokenisation, extraction paths, layers, shards, errors.

Models are tiny random-weight BertForMaskedLM built from small configs; dictionaries are hand-made
pickles in tmp_path. Tests that read the real dictionaries/configs in ../shared skip without them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scregnet.config import GeneformerConfig
from scregnet.embeddings import geneformer as gf
from scregnet.embeddings.geneformer import inference
from scregnet.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCFM = SHARED / "scfm" / "geneformer"
needs_shared = pytest.mark.skipif(not SCFM.is_dir(), reason=f"shared Geneformer assets not found at {SCFM}")

N_GENES = 40


def ens(i: int) -> str:
    return f"ENSG{i:011d}"


def make_dicts(directory: Path, version: str = "v2", n_genes: int = N_GENES) -> Path:
    """Hand-made dictionaries. Gene i: symbol G{i}, Ensembl ens(i), median 1 + i % 3.

    Token ids run in REVERSE gene order (so tie order by token id differs from column order).
    "G0_ALIAS" maps to ens(0) (a duplicate); "Gene_Last" is only in the name_id dict (mixed case);
    "NOTOKEN" maps to an Ensembl ID that has no token. Values are numpy scalars, as upstream.
    """
    directory.mkdir(parents=True, exist_ok=True)
    special = ["<pad>", "<mask>"] + (["<cls>", "<eos>"] if version == "v2" else [])
    token = {s: np.int16(k) for k, s in enumerate(special)}
    for rank, i in enumerate(reversed(range(n_genes))):
        token[ens(i)] = np.int16(len(special) + rank)
    median = {ens(i): np.float64(1.0 + i % 3) for i in range(n_genes)}
    mapping = {f"G{i}": ens(i) for i in range(n_genes - 1)}
    mapping.update({"G0_ALIAS": ens(0), "NOTOKEN": "ENSG99999999999"})
    name_id = {"Gene_Last": ens(n_genes - 1)}
    suffix = "gc95M" if version == "v2" else "gc30M"
    for stem, obj in [
        ("token_dictionary", token),
        ("gene_median_dictionary", median),
        ("ensembl_mapping_dict", mapping),
        ("gene_name_id_dict", name_id),
    ]:
        with open(directory / f"{stem}_{suffix}.pkl", "wb") as fh:
            pickle.dump(obj, fh)
    return directory


def tiny_model(version: str = "v2", n_genes: int = N_GENES, layers: int = 2, seed: int = 0):
    n_special = 4 if version == "v2" else 2
    return gf.build_random_model(
        {
            "architectures": ["BertForMaskedLM"],
            "model_type": "bert",
            "hidden_act": "relu",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": layers,
            "max_position_embeddings": 4096 if version == "v2" else 2048,
            "vocab_size": n_special + n_genes,
            "pad_token_id": 0,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
        },
        seed=seed,
    )


def symbols(n: int = N_GENES) -> list[str]:
    return [f"G{i}" for i in range(n - 1)] + ["Gene_Last"]


def random_adata(n_cells: int = 12, seed: int = 0, extra: list[str] | None = None) -> ad.AnnData:
    genes = symbols() + (extra or [])
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.0, 1.0, size=(n_cells, len(genes))) * (rng.random((n_cells, len(genes))) < 0.6)
    a = ad.AnnData(x.astype(np.float32))
    a.var_names = genes
    return a


def oracle(model, cells, n_slots: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent check: each cell alone (no padding), eager fp32, hidden_states[index]."""
    model.set_attn_implementation("eager")
    d = model.config.hidden_size
    sums, counts = np.zeros((n_slots, d)), np.zeros(n_slots, dtype=np.int64)
    with torch.no_grad():
        for tok, sl in cells:
            if len(tok) == 0:
                continue
            h = model(input_ids=torch.tensor(tok)[None], output_hidden_states=True).hidden_states[index][0].numpy()
            for p, s in enumerate(sl):
                if s >= 0:
                    sums[s] += h[p]
                    counts[s] += 1
    return sums, counts


@pytest.fixture()
def v2_dir(tmp_path: Path) -> Path:
    return make_dicts(tmp_path / "dicts")


@pytest.fixture(scope="module")
def model_v2():
    return tiny_model("v2")


# ---------------------------------------------------------------------------------------------
# Dictionaries, mapping, coverage


def test_dictionaries_cast_numpy_scalars_and_hash_files(v2_dir: Path):
    d = gf.load_dictionaries(v2_dir, "v2")
    assert d.special_ids == (2, 3)
    assert all(type(v) is int for v in d.token.values())
    assert all(type(v) is float for v in d.median.values())
    assert set(d.hashes) == {
        "token_dictionary_gc95M.pkl",
        "gene_median_dictionary_gc95M.pkl",
        "ensembl_mapping_dict_gc95M.pkl",
        "gene_name_id_dict_gc95M.pkl",
    }
    assert d.to_ensembl("g5") == ens(5)  # upper-cased lookup
    assert d.to_ensembl("gene_last") == ens(N_GENES - 1)  # name_id fallback, mixed-case key
    assert d.to_ensembl(ens(7)) == ens(7)  # Ensembl IDs pass through
    assert d.to_ensembl("UNKNOWN") is None


def test_coverage_reports_unmapped_and_out_of_vocabulary(v2_dir: Path):
    genes = ["G1", "UNKNOWN", "NOTOKEN", "gene_last", "G2"]
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(v2_dir, "v2"), genes)
    cov = tok.coverage
    assert cov["unmapped"] == ["UNKNOWN"]
    assert cov["not_in_vocabulary"] == ["NOTOKEN"]
    assert (cov["n_genes"], cov["n_mapped_ensembl"], cov["n_in_vocabulary"]) == (5, 4, 3)
    assert cov["mapped_fraction"] == pytest.approx(0.6)
    assert tok.gene_slot.tolist() == [0, -1, -1, 1, 2]


def test_missing_dictionaries_name_the_path(tmp_path: Path, v2_dir: Path):
    with pytest.raises(DataError, match="not found"):
        gf.load_dictionaries(tmp_path / "nope", "v2")
    (v2_dir / "token_dictionary_gc95M.pkl").unlink()
    with pytest.raises(DataError, match="token_dictionary_gc95M.pkl"):
        gf.load_dictionaries(v2_dir, "v2")
    with pytest.raises(DataError, match="token_dictionary_gc30M.pkl"):
        gf.load_dictionaries(v2_dir, "v1")
    with pytest.raises(DataError, match="dictionaries is not set"):
        gf.load_dictionaries(None, "v2")


def test_version_detection():
    assert gf.detect_version(tiny_model("v1", layers=1).config) == "v1"
    assert gf.detect_version(tiny_model("v2", layers=1).config) == "v2"


def test_version_from_dictionaries_when_model_is_ambiguous(tmp_path: Path):
    cfg = type("C", (), {"max_position_embeddings": 512, "vocab_size": 99})()
    make_dicts(tmp_path / "only_v1", "v1")
    assert gf.detect_version(cfg, tmp_path / "only_v1") == "v1"
    make_dicts(tmp_path / "only_v1", "v2")  # both present: ambiguous
    with pytest.raises(DataError, match="set embedder.geneformer.version"):
        gf.detect_version(cfg, tmp_path / "only_v1")


# ---------------------------------------------------------------------------------------------
# Tokenisation


def test_v2_rank_order_ties_zeros_and_special_tokens(v2_dir: Path):
    d = gf.load_dictionaries(v2_dir, "v2")
    tok = gf.GeneformerTokenizer(d, ["G1", "G2", "G3", "G4", "G5"])
    # G2 absent (0), G5 negative (not expressed); G1 and G4 tie at 3.0: lower token id first,
    # and token ids run in reverse gene order, so G4 (id 39) precedes G1 (id 42).
    tokens, slots = tok.tokenize(np.array([[3.0, 0.0, 5.0, 3.0, -1.0]]))[0]
    t = {g: d.token[ens(i)] for g, i in [("G1", 1), ("G3", 3), ("G4", 4)]}
    assert tokens.tolist() == [2, t["G3"], t["G4"], t["G1"], 3]
    assert slots.tolist() == [-1, 2, 3, 0, -1]


def test_transform_counts_divides_by_gene_median_none_does_not(v2_dir: Path):
    d = gf.load_dictionaries(v2_dir, "v2")
    genes = ["G2", "G3"]  # medians 3.0 and 1.0
    x = np.array([[6.0, 4.0]])
    none = gf.GeneformerTokenizer(d, genes, "none")
    counts = gf.GeneformerTokenizer(d, genes, "counts")
    assert none.tokenize(x)[0][1].tolist() == [-1, 0, 1, -1]  # 6 > 4
    assert counts.tokenize(x)[0][1].tolist() == [-1, 1, 0, -1]  # 6/3 < 4/1
    vals = counts.slot_values(x)
    np.testing.assert_allclose(vals, [[6 / 10 * 1e4 / 3, 4 / 10 * 1e4 / 1]])


def test_v2_sums_symbols_that_share_an_ensembl_id(v2_dir: Path):
    d = gf.load_dictionaries(v2_dir, "v2")
    tok = gf.GeneformerTokenizer(d, ["G0", "G3", "G0_ALIAS"])
    assert tok.coverage["n_duplicates_summed"] == 1 and tok.n_slots == 2
    tokens, slots = tok.tokenize(np.array([[1.0, 3.5, 3.0]]))[0]  # G0 = 1 + 3 = 4 > 3.5
    assert tokens.tolist() == [2, d.token[ens(0)], d.token[ens(3)], 3]
    v1 = gf.GeneformerTokenizer(
        gf.load_dictionaries(make_dicts(v2_dir.parent / "v1", "v1"), "v1"), ["G0", "G3", "G0_ALIAS"]
    )
    tokens1, _ = v1.tokenize(np.array([[1.0, 3.5, 3.0]]))[0]  # V1: one token per column, no specials
    assert tokens1.tolist() == [v1.slot_token[1], v1.slot_token[2], v1.slot_token[0]]


def test_truncation_at_the_version_limits(tmp_path: Path):
    n = 5000
    rng = np.random.default_rng(1)
    x = rng.permutation(n).astype(float)[None, :] + 1.0  # all expressed, distinct values
    genes = [f"G{i}" for i in range(n - 1)]
    for version, limit, extra in [("v2", gf.V2_MAX_GENES, 2), ("v1", gf.V1_MAX_TOKENS, 0)]:
        d = gf.load_dictionaries(make_dicts(tmp_path / version, version, n), version)
        tok = gf.GeneformerTokenizer(d, genes)
        tokens, slots = tok.tokenize(x[:, : n - 1])[0]
        assert len(tokens) == limit + extra
        top = np.argsort(-x[0, : n - 1])[:limit]
        assert slots[slots >= 0].tolist() == top.tolist()
        if version == "v2":
            assert (tokens[0], tokens[-1], len(tokens)) == (2, 3, 4096)
        else:
            assert len(tokens) == 2048 and not {0, 1} & set(tokens.tolist())


def test_empty_cell_gives_no_tokens(v2_dir: Path):
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(v2_dir, "v2"), ["G1", "G2"])
    tokens, slots = tok.tokenize(np.zeros((1, 2)))[0]
    assert len(tokens) == 0 and len(slots) == 0


# ---------------------------------------------------------------------------------------------
# Extraction


def test_fast_and_reference_paths_match_a_per_cell_oracle(v2_dir: Path, model_v2):
    a = random_adata(10)
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(v2_dir, "v2"), list(a.var_names))
    cells = tok.tokenize(a.X)
    assert len({len(t) for t, _ in cells}) > 3  # varied lengths: padding is exercised
    want_s, want_c = oracle(model_v2, cells, tok.n_slots, index=1)  # 2 layers: -2 -> hidden_states[1]
    for fast, bs in [(True, None), (True, 3), (False, 1), (False, 4)]:
        s, c = gf.embed_token_cells(model_v2, cells, tok.n_slots, layer=-2, fast=fast, batch_size=bs)
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_allclose(s, want_s, atol=2e-5, rtol=1e-5, err_msg=f"fast={fast} batch_size={bs}")


def test_bf16_autocast_stays_close_to_fp32_and_is_recorded(v2_dir: Path, model_v2):
    a = random_adata(10, seed=4)
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(v2_dir, "v2"), list(a.var_names))
    cells = tok.tokenize(a.X)
    want_s, want_c = oracle(model_v2, cells, tok.n_slots, index=1)
    s, c = gf.embed_token_cells(model_v2, cells, tok.n_slots, layer=-2, precision="bf16")
    np.testing.assert_array_equal(c, want_c)
    has = c > 0
    got, want = s[has] / c[has, None], want_s[has] / want_c[has, None]
    assert np.abs(got - want).max() > 1e-5  # bf16 really ran (fp32 agrees to ~1e-6)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.999
    # auto = fp32 on CPU; the choice is part of the artifact's provenance and of the shard merge
    cfg = GeneformerConfig(dictionaries=v2_dir, n_shards=2)
    fp32 = gf.GeneformerEmbedder(cfg, model=model_v2)
    bf16 = gf.GeneformerEmbedder(cfg.model_copy(update={"precision": "bf16"}), model=model_v2)
    parts = [fp32.embed_shard(a, 0, 2), bf16.embed_shard(a, 1, 2)]
    assert [p.metadata["precision"] for p in parts] == ["fp32", "bf16"]
    with pytest.raises(ValueError, match="precision"):
        gf.merge_gene_sums(parts)
    with pytest.raises(ValueError, match="precision must be"):
        gf.resolve_precision("fp16", torch.device("cpu"))


def token_cells(version: str, lengths: list[int], n_genes: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tokenised cells as the tokenizer emits them: `lengths` ranked genes each (V2 adds <cls>/<eos>)."""
    rng = np.random.default_rng(seed)
    first = 4 if version == "v2" else 2  # gene token ids start after the special tokens
    cells = []
    for n in lengths:
        slots = rng.choice(n_genes, size=n, replace=False)
        tokens = slots + first
        if version == "v2":
            tokens, slots = np.concatenate(([2], tokens, [3])), np.concatenate(([-1], slots, [-1]))
        cells.append((tokens.astype(np.int64), slots.astype(np.int64)))
    return cells


# Very different lengths (1 to 300 genes), in no particular order.
PACK_LENGTHS = [37, 300, 1, 120, 5, 260, 64, 2, 190, 11]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packed_path_equals_padded_paths_and_per_cell_reference(version: str):
    n_genes = 320
    model = tiny_model(version, n_genes=n_genes, seed=5)
    cells = token_cells(version, PACK_LENGTHS, n_genes)
    want_s, want_c = oracle(model, cells, n_genes, index=1)
    assert len(np.unique(want_c)) > 3  # genes seen in different numbers of cells
    runs = {
        # packs from the token budget, one cell per pack, and pack boundaries inside the length
        # distribution (after the 3 longest cells: 300 | 260 | 190 and so on)
        ("packed", None),
        ("packed", 1),
        ("packed", 3),
        ("sdpa", None),
        ("sdpa", 3),
        ("eager", 4),
    }
    got = {}
    for attention, bs in sorted(runs, key=str):
        s, c = gf.embed_token_cells(model, cells, n_genes, layer=-2, batch_size=bs, attention=attention)
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_allclose(s, want_s, atol=2e-5, rtol=1e-5, err_msg=f"{attention} batch_size={bs}")
        got[attention, bs] = s
    np.testing.assert_allclose(got["packed", 3], got["sdpa", None], atol=2e-5, rtol=1e-5)
    # all hidden states, layer 0 (embeddings only: position ids must restart in every cell) to the last
    for layer in (-3, -1):
        s, _ = gf.embed_token_cells(model, cells, n_genes, layer=layer, batch_size=4, attention="packed")
        ref, _ = oracle(model, cells, n_genes, index=gf.hidden_state_index(layer, 2))
        np.testing.assert_allclose(s, ref, atol=2e-5, rtol=1e-5, err_msg=f"layer {layer}")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packed_path_single_cell(version: str):
    model = tiny_model(version, n_genes=N_GENES, seed=6)
    for n in (1, N_GENES):
        cells = token_cells(version, [n], N_GENES, seed=n)
        s, c = gf.embed_token_cells(model, cells, N_GENES, attention="packed")
        want_s, want_c = oracle(model, cells, N_GENES, index=1)
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_allclose(s, want_s, atol=2e-5, rtol=1e-5)


def test_flash_varlen_kernel_gets_the_pack_layout(monkeypatch):
    """The CUDA kernel cannot run here: a stand-in with varlen_attn's signature, computed from the
    cu_seqlens it is given, must reproduce the per-cell results (argument plumbing and layout)."""
    import torch.nn.attention.varlen as varlen

    calls = []

    def fake_varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, **kw):
        assert q.shape == k.shape == v.shape and q.dim() == 3 and cu_q.dtype == torch.int32
        bounds = cu_q.tolist()
        assert cu_k is cu_q and max_q == max_k == max(np.diff(bounds)) and bounds[-1] == q.shape[0]
        calls.append(len(bounds) - 1)
        out = [
            torch.nn.functional.scaled_dot_product_attention(
                *(x[s:e].transpose(0, 1) for x in (q, k, v)), scale=scale
            ).transpose(0, 1)
            for s, e in zip(bounds[:-1], bounds[1:])
        ]
        return torch.cat(out)

    monkeypatch.setattr(varlen, "varlen_attn", fake_varlen_attn)
    model = tiny_model("v2", n_genes=320, seed=5)
    cells = token_cells("v2", PACK_LENGTHS, 320)
    pack = gf.pack_cells(cells, np.arange(len(cells)), 320, "cpu")
    with torch.no_grad():
        flash = gf.packed_hidden(model.bert, pack, 2, "flash_varlen")
        per_cell = gf.packed_hidden(model.bert, pack, 2, "sdpa_per_cell")
    assert calls == [len(cells)] * 2  # one call per layer over the whole pack
    torch.testing.assert_close(flash, per_cell)


def test_packs_follow_the_token_budget_longest_first():
    lengths = np.array(PACK_LENGTHS)
    packs = inference._plan_packs(lengths, None, token_budget=400)
    assert sorted(np.concatenate(packs).tolist()) == list(range(len(lengths)))  # every cell once
    assert [lengths[p].tolist() for p in packs] == [[300], [260], [190, 120, 64], [37, 11, 5, 2, 1]]
    assert all(lengths[p].sum() <= 400 for p in packs)
    alone = inference._plan_packs(lengths, None, token_budget=10)  # cells longer than the budget go alone
    assert [len(p) for p in alone] == [1] * 7 + [3]
    assert [len(p) for p in inference._plan_packs(lengths, 4, token_budget=0)] == [4, 4, 2]


def test_packed_pack_layout():
    cells = token_cells("v2", [3, 1], n_genes=10)
    pack = gf.pack_cells(cells, np.array([1, 0]), n_slots=10, device="cpu")
    assert pack.positions.tolist() == [0, 1, 2, 0, 1, 2, 3, 4]  # restart per cell
    assert pack.cu_seqlens.tolist() == [0, 3, 8] and pack.max_len == 5
    assert pack.slots[[0, 2, 3, 7]].tolist() == [10] * 4  # <cls>/<eos> go to the scratch slot
    assert pack.ids.tolist() == cells[1][0].tolist() + cells[0][0].tolist()


def test_attention_is_resolved_recorded_and_checked_at_merge(v2_dir: Path, model_v2):
    cpu = torch.device("cpu")
    assert gf.resolve_attention("auto", cpu) == "packed"  # not slower than padding on CPU
    assert gf.packed_kernel(cpu, "fp32", 8) == "sdpa_per_cell"  # flash varlen is CUDA only
    assert not gf.flash_varlen_available(cpu, torch.bfloat16, 8)
    a = random_adata(9, seed=11)
    cfg = GeneformerConfig(dictionaries=v2_dir, n_shards=2)
    embedders = {
        att: gf.GeneformerEmbedder(cfg.model_copy(update={"attention": att}), model=model_v2)
        for att in ("auto", "packed", "sdpa", "eager")
    }
    metas = {att: e.embed_shard(a, 0, 2).metadata for att, e in embedders.items()}
    assert [metas[att]["attention"] for att in embedders] == ["packed", "packed", "sdpa", "eager"]
    assert metas["packed"]["attention_kernel"] == "sdpa_per_cell" and "attention_kernel" not in metas["sdpa"]
    reference = gf.GeneformerEmbedder(cfg, model=model_v2, fast=False).embed_shard(a, 0, 2)
    assert reference.metadata["attention"] == "eager"
    parts = [embedders["packed"].embed_shard(a, 0, 2), embedders["sdpa"].embed_shard(a, 1, 2)]
    with pytest.raises(ValueError, match="different attention"):
        gf.merge_gene_sums(parts)
    same = gf.merge_gene_sums([embedders["auto"].embed_shard(a, 1, 2), parts[0]])
    np.testing.assert_allclose(same.vectors, embedders["sdpa"].embed(a).vectors, atol=1e-5, rtol=1e-5)
    assert same.metadata["attention"] == "packed"


def test_bad_attention_value_is_a_clear_error(v2_dir: Path, model_v2):
    with pytest.raises(ValidationError, match="attention"):
        GeneformerConfig(attention="flash")
    cfg = GeneformerConfig(dictionaries=v2_dir).model_copy(update={"attention": "flash"})  # skips validation
    with pytest.raises(ValueError, match="attention must be one of auto, packed, sdpa, eager, got 'flash'"):
        gf.GeneformerEmbedder(cfg, model=model_v2).embed(random_adata(2))
    with pytest.raises(ValueError, match="attention must be one of"):
        gf.embed_token_cells(model_v2, token_cells("v2", [3], N_GENES), N_GENES, attention="Packed")


def test_layer_selection_matches_hidden_state_indices(v2_dir: Path, model_v2):
    a = random_adata(4, seed=3)
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(v2_dir, "v2"), list(a.var_names))
    cells = tok.tokenize(a.X)
    last, _ = gf.embed_token_cells(model_v2, cells, tok.n_slots, layer=-1)
    penult, _ = gf.embed_token_cells(model_v2, cells, tok.n_slots, layer=-2)
    np.testing.assert_allclose(last, oracle(model_v2, cells, tok.n_slots, 2)[0], atol=2e-5)
    np.testing.assert_allclose(penult, oracle(model_v2, cells, tok.n_slots, 1)[0], atol=2e-5)
    assert np.abs(last - penult).max() > 1e-2
    assert gf.hidden_state_index(-2, 20) == 19 and gf.hidden_state_index(-1, 20) == 20
    with pytest.raises(ValueError, match="out of range"):
        gf.hidden_state_index(-4, 2)


def test_embedder_output_metadata_and_means(v2_dir: Path, model_v2):
    a = random_adata(8, extra=["UNKNOWN"])
    a.X[3] = 0.0  # an empty cell
    a.X[:, 5] = 0.0  # G5 never expressed: no vector
    emb = gf.GeneformerEmbedder(GeneformerConfig(dictionaries=v2_dir), model=model_v2).embed(a)
    assert "G5" not in emb.genes and "UNKNOWN" not in emb.genes
    assert emb.genes == [g for g in a.var_names if g not in ("G5", "UNKNOWN")]
    m = emb.metadata
    assert (m["embedder"], m["version"], m["layer"], m["hidden_state_index"], m["dims"]) == (
        "geneformer",
        "v2",
        -2,
        1,
        32,
    )
    assert (m["n_cells"], m["n_cells_empty"]) == (8, 1)
    assert m["coverage"]["unmapped"] == ["UNKNOWN"] and m["coverage"]["genes_with_vector"] == N_GENES - 1
    assert set(m["dictionary_sha256"]) >= {"token_dictionary_gc95M.pkl"} and len(m["input_sha256"]) == 64
    # vectors are means over the cells where the gene was ranked (oracle on the same tokens)
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(v2_dir, "v2"), list(a.var_names))
    s, c = oracle(model_v2, tok.tokenize(a.X), tok.n_slots, 1)
    g1 = tok.gene_slot[list(a.var_names).index("G1")]
    np.testing.assert_allclose(emb.vectors[emb.genes.index("G1")], s[g1] / c[g1], atol=2e-5)
    # a different input gives a different input hash
    b = a.copy()
    b.X[0, 0] += 1.0
    other = gf.GeneformerEmbedder(GeneformerConfig(dictionaries=v2_dir), model=model_v2).embed(b)
    assert other.metadata["input_sha256"] != m["input_sha256"]


def test_shards_merge_exactly(v2_dir: Path, model_v2):
    a = random_adata(13, seed=7)
    one = gf.GeneformerEmbedder(GeneformerConfig(dictionaries=v2_dir), model=model_v2).embed(a)
    cfg = GeneformerConfig(dictionaries=v2_dir, n_shards=3, batch_size=2)
    three = gf.GeneformerEmbedder(cfg, model=model_v2).embed(a)
    assert three.genes == one.genes and three.metadata["n_shards"] == 3
    np.testing.assert_allclose(three.vectors, one.vectors, atol=1e-6, rtol=1e-6)
    emb = gf.GeneformerEmbedder(cfg, model=model_v2)
    parts = [emb.embed_shard(a, i, 3) for i in (2, 0, 1)]  # any order
    assert sorted(p.n_cells for p in parts) == [4, 4, 5]
    merged = gf.merge_gene_sums(parts)
    np.testing.assert_allclose(merged.vectors, one.vectors, atol=1e-6, rtol=1e-6)
    assert merged.metadata["n_cells"] == 13
    parts[0].metadata["layer"] = -1
    with pytest.raises(ValueError, match="layer"):
        gf.merge_gene_sums(parts)


def test_max_cells_is_deterministic_and_bounded(v2_dir: Path, model_v2):
    a = random_adata(20, seed=2)
    cfg = GeneformerConfig(dictionaries=v2_dir, max_cells=5)
    e1 = gf.GeneformerEmbedder(cfg, model=model_v2).embed(a)
    e2 = gf.GeneformerEmbedder(cfg, model=model_v2).embed(a)
    assert e1.metadata["n_cells"] == 5 and e1.content_hash() == e2.content_hash()
    assert gf.select_cells(20, 5).tolist() == [0, 5, 10, 14, 19]


def test_v1_model_with_auto_version(tmp_path: Path):
    make_dicts(tmp_path / "d", "v1")
    make_dicts(tmp_path / "d", "v2")  # both sets present: the model decides
    a = random_adata(5)
    emb = gf.GeneformerEmbedder(GeneformerConfig(dictionaries=tmp_path / "d"), model=tiny_model("v1", layers=1)).embed(
        a
    )
    assert emb.metadata["version"] == "v1" and "token_dictionary_gc30M.pkl" in emb.metadata["dictionary_sha256"]
    assert emb.metadata["max_genes_per_cell"] == 2048 and len(emb.genes) > 30


# ---------------------------------------------------------------------------------------------
# Errors and model loading


def test_zero_genes_mapped_is_a_clear_error(v2_dir: Path, model_v2):
    a = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    a.var_names = ["FOO", "BAR"]
    with pytest.raises(DataError, match="none of the 2 genes"):
        gf.GeneformerEmbedder(GeneformerConfig(dictionaries=v2_dir), model=model_v2).embed(a)


def test_dictionary_model_mismatch_is_reported(tmp_path: Path):
    d = make_dicts(tmp_path / "d", "v2", n_genes=N_GENES + 20)  # ids beyond the model's vocabulary
    with pytest.raises(DataError, match="do not match"):
        gf.GeneformerEmbedder(GeneformerConfig(dictionaries=d), model=tiny_model("v2", layers=1)).embed(random_adata(2))


def test_model_path_not_found(tmp_path: Path, v2_dir: Path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(DataError, match="no_such_model"):
        gf.load_model(missing)
    with pytest.raises(DataError, match="no_such_model"):
        gf.GeneformerEmbedder(GeneformerConfig(model=str(missing), dictionaries=v2_dir)).embed(random_adata(2))
    with pytest.raises(DataError, match="model is not set"):
        gf.GeneformerEmbedder(GeneformerConfig(dictionaries=v2_dir)).embed(random_adata(2))


def test_load_model_from_safetensors_directory(tmp_path: Path, model_v2):
    out = tmp_path / "gf-tiny"
    model_v2.save_pretrained(out)
    assert list(out.glob("*.safetensors"))
    loaded = gf.load_model(out)
    ids = torch.tensor([[2, 10, 11, 3]])
    with torch.no_grad():
        a = model_v2.bert(input_ids=ids).last_hidden_state
        b = loaded.bert(input_ids=ids).last_hidden_state
    torch.testing.assert_close(a, b)
    for f in out.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(DataError, match="safetensors"):
        gf.load_model(out)


# ---------------------------------------------------------------------------------------------
# Real dictionaries and configs (../shared)


@needs_shared
def test_real_dictionaries_cover_hesc_reference_genes():
    ref = torch.load(SCFM / "precomputed_scregnet_hESC_TFs500" / "fm_embeddings.pt", weights_only=True)
    genes = list(ref)
    v2 = gf.GeneformerTokenizer(gf.load_dictionaries(SCFM, "v2"), genes)
    assert v2.coverage["n_in_vocabulary"] == 870 and v2.coverage["unmapped"] == ["KIAA1804"]
    v1 = gf.load_dictionaries(SCFM, "v1")  # 30M set lives in gene_dictionaries_30m/
    assert len(v1.token) == 25426 and v1.special_ids is None
    assert gf.GeneformerTokenizer(v1, genes).coverage["n_in_vocabulary"] >= 860


@needs_shared
def test_real_architecture_end_to_end_small():
    model = gf.build_random_model(SCFM / "configs" / "gf-6L-30M-i2048")
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (6, 256, 25426)
    genes = list(torch.load(SCFM / "precomputed_scregnet_hESC_TFs500" / "fm_embeddings.pt", weights_only=True))[:200]
    rng = np.random.default_rng(0)
    a = ad.AnnData((rng.poisson(1.0, (3, len(genes)))).astype(np.float32))
    a.var_names = genes
    emb = gf.GeneformerEmbedder(GeneformerConfig(dictionaries=SCFM, transform="counts"), model=model).embed(a)
    assert emb.metadata["version"] == "v1" and emb.dim == 256 and len(emb.genes) > 150
    assert np.isfinite(emb.vectors).all()

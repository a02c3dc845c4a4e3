"""Geneformer gene embeddings: rank-value tokenisation + hidden states of a frozen BERT.

Recipe (docs/geneformer.md):

1. Map gene symbols to Ensembl IDs (upper-cased lookup in `ensembl_mapping_dict_*`, then
   `gene_name_id_dict_*`); keep genes present in the token dictionary (and the median dictionary).
2. Per cell, value per gene -> rank-value encoding:
   - V2 (95M dictionaries): columns that map to one Ensembl ID are summed (one token per ID);
     V1 (30M) keeps every column as its own token, as the V1 tokenizer did.
   - `transform="none"`: rank by the values exactly as given (no total and no median scaling),
     e.g. BEELINE's log-normalised values ranked directly.
     `transform="counts"`: Geneformer's normalisation value / cell total * 10,000 / gene median,
     treating the input as raw counts (the cell total is the row sum over ALL input genes).
     The total scaling does not change the order within a cell, so this ranks by value / median.
   - Keep values > 0 (zeros, negatives and NaN are "not expressed"), sort descending; ties are
     broken by ascending token id, then by input column (deterministic, independent of the order
     of the input columns for V2).
   - V1: first 2,048 tokens, no special tokens. V2: first 4,094 genes between `<cls>` and `<eos>`.
3. Run the model (eval mode; pad id 0 + attention mask). `layer` indexes the L+1 hidden states
   like Python does: -1 = last layer output (hidden_states[L]), -2 = penultimate block output
   (hidden_states[L-1], the default; index 19 of the 20-layer model), 0 = token embeddings.
4. A gene's embedding = mean of its vectors over the cells in which it was ranked; `<cls>`/`<eos>`
   positions are dropped. The mean is kept as (float64 sum, count) so cell shards merge exactly.

Two execution paths give the same numbers within float tolerance:
- fast (default; the GPU path, also used on CPU): base `BertModel` only (no MLM head), encoder cut
  after the requested layer (later layers cannot change it), bf16 autocast (`precision`: auto =
  bf16 on CUDA, fp32 on CPU; bf16 on CPU on request), cells sorted by length, `torch.inference_mode`,
  per-gene sums accumulated on the device with `index_add_` (per-cell hidden states are never
  kept). `attention` picks how cells are batched:
  - packed: cells concatenated into one unpadded token stream per pack (cumulative sequence
    lengths, position ids restarting per cell, attention within each cell; `packed.py`): the flash
    varlen kernel on CUDA in bf16, per-cell SDPA otherwise. Packs are sized by a token budget.
  - sdpa / eager: HF attention over padded batches sized from free memory.
  - auto: packed on CUDA when the flash varlen kernel runs there (bf16), else sdpa; packed on CPU.
- reference: what Geneformer's own extractor does: the full `BertForMaskedLM` in fp32 with eager
  attention, `output_hidden_states=True`, batches in input order padded to the longest cell.
The resolved precision and attention are recorded in the metadata and must agree between shards.

Dictionaries are pickles and are read only from a trusted, configured directory; model weights are
never unpickled (safetensors only).

Modules, one job each: `dictionaries` (dictionary files, version detection), `tokenizer` (rank-value
encoding), `inference` (model loading, batch/pack planning, precision and attention choice, per-gene
sums), `packed` (the packed forward), `sums` (shard (sum, count) tables, merging, cell selection),
`embedder` (`GeneformerEmbedder`).
"""

from scregnet.embeddings.geneformer.dictionaries import (
    DICTIONARY_FILES,
    V1_SUBDIR,
    GeneformerDictionaries,
    detect_version,
    load_dictionaries,
)
from scregnet.embeddings.geneformer.embedder import GeneformerEmbedder
from scregnet.embeddings.geneformer.inference import (
    ATTENTION_CHOICES,
    accumulate_gene_sums,
    build_random_model,
    embed_token_cells,
    head_dim,
    hidden_state_index,
    load_model,
    packed_kernel,
    resolve_attention,
    resolve_precision,
)
from scregnet.embeddings.geneformer.packed import Pack, flash_varlen_available, pack_cells, packed_hidden
from scregnet.embeddings.geneformer.sums import (
    GeneSums,
    expression_matrix,
    gene_sums_to_embedding,
    input_sha256,
    merge_gene_sums,
    select_cells,
    shard_cells,
    sum_gene_sums,
)
from scregnet.embeddings.geneformer.tokenizer import (
    TARGET_SUM,
    TIE_RULE,
    V1_MAX_TOKENS,
    V2_MAX_GENES,
    GeneformerTokenizer,
)

__all__ = [
    "ATTENTION_CHOICES",
    "Pack",
    "flash_varlen_available",
    "head_dim",
    "pack_cells",
    "packed_hidden",
    "packed_kernel",
    "resolve_attention",
    "DICTIONARY_FILES",
    "TARGET_SUM",
    "TIE_RULE",
    "V1_MAX_TOKENS",
    "V1_SUBDIR",
    "V2_MAX_GENES",
    "GeneSums",
    "GeneformerDictionaries",
    "GeneformerEmbedder",
    "GeneformerTokenizer",
    "accumulate_gene_sums",
    "build_random_model",
    "detect_version",
    "embed_token_cells",
    "gene_sums_to_embedding",
    "hidden_state_index",
    "expression_matrix",
    "input_sha256",
    "load_dictionaries",
    "load_model",
    "merge_gene_sums",
    "resolve_precision",
    "select_cells",
    "shard_cells",
    "sum_gene_sums",
]

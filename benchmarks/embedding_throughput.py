#!/usr/bin/env python
"""Geneformer embedding throughput: the plain fp32 eager reference path vs the optimised paths.

Random-weight models with the exact architectures of the published checkpoints (configs in
../shared/scfm/geneformer/configs), synthetic tokenised cells drawn from a gene universe (genes recur
across cells as in a real dataset), in two length profiles:
- beeline: 500-1,000 ranked genes per cell (2,000-gene universe), like BEELINE's hESC TFs+500;
- atlas: 1,500 genes up to the model's input size (2,048 tokens for V1, 4,094 genes + <cls>/<eos>
  = 4,096 tokens for V2; 8,192-gene universe), like a whole-transcriptome atlas cell.

(a) plain: full BertForMaskedLM (MLM head included, as Geneformer's own extractor runs it), fp32,
    eager attention, output_hidden_states=True, batches in input order padded to the longest cell.
(b) optimised, one row per --attention: GeneformerEmbedder's fast path (base BertModel cut after the
    requested layer, autocast per --precision, on-device index_add_) with
    packed: cells concatenated into unpadded token streams, attention within each cell (flash varlen
    on CUDA in bf16, per-cell SDPA otherwise); sdpa / eager: HF attention over length-sorted padded
    batches sized from free memory.

Model FLOPs per cell = over the layers the requested hidden state needs (L-1 for layer -2):
2 x non-embedding params of those layers x tokens + 4 x tokens^2 x hidden (QK^T and AV).
The same useful work is credited to every path (padding earns nothing). MFU = achieved model FLOP/s /
peak: --peak-tflops, else the card's dense bf16 spec (H100 / H200 table below), else on CPU a measured
matmul rate in the optimised path's precision. Cosine: per-gene mean vectors vs the plain fp32 path.
host CPU s: CPU time of this process (all threads; the least over repeats). On a shared CPU it moves
less with other tenants' load than wall time does.

    python benchmarks/embedding_throughput.py --device cpu --cells 64 --configs gf-6L-30M-i2048 \
        --profiles beeline atlas --attention packed sdpa eager --out benchmarks/results/embedding.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from scregnet.embeddings import geneformer as gf  # noqa: E402

DEFAULT_CONFIGS = ["gf-6L-30M-i2048", "gf-12L-95M-i4096", "gf-20L-95M-i4096"]
DEFAULT_CONFIG_DIR = REPO.parent / "shared" / "scfm" / "geneformer" / "configs"
# Vendor dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, matched against the CUDA device name
# in this order (docs/geneformer.md uses ~790 as a practical bound for the H200).
CARD_BF16_DENSE_TFLOPS = [("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0)]
PLAIN_BATCH_DEFAULT = {"cuda": "64 (beeline) / 8 (atlas)", "cpu": "8 (beeline) / 2 (atlas)"}
PROFILES = {"beeline": (500, 1000, 2000), "atlas": (1500, None, 8192)}  # genes min, max (None: input size), universe


def synthetic_cells(config, n_cells: int, lo: int, hi: int, universe: int, seed: int):
    """Tokenised cells as the tokenizer emits them: (token ids [T], slots [T]); V2 gets <cls>/<eos>."""
    rng = np.random.default_rng(seed)
    v2 = config.max_position_embeddings >= 4096
    first = 4 if v2 else 2  # skip <pad>, <mask> (, <cls>, <eos>)
    vocab = rng.choice(np.arange(first, config.vocab_size), size=universe, replace=False)
    cells = []
    for _ in range(n_cells):
        slots = rng.choice(universe, size=int(rng.integers(lo, hi + 1)), replace=False)  # order = rank
        tokens = vocab[slots]
        if v2:
            tokens = np.concatenate(([2], tokens, [3]))
            slots = np.concatenate(([-1], slots, [-1]))
        cells.append((tokens.astype(np.int64), slots.astype(np.int64)))
    return cells, universe


def flops_per_cell(config, n_tokens: np.ndarray, depth: int) -> np.ndarray:
    d, i = config.hidden_size, config.intermediate_size
    per_layer = 4 * d * d + 4 * d + 2 * d * i + i + d + 2 * 2 * d  # QKV+O, FFN, LayerNorms
    return depth * (2.0 * per_layer * n_tokens + 4.0 * n_tokens.astype(np.float64) ** 2 * d)


def _return_freed_memory() -> None:
    """glibc keeps freed heap pages; hand them back so RSS starts from what is really in use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the reading may then undercount
        pass


class PeakMemory:
    """CUDA: max allocated bytes. CPU: peak RSS increase over the run (sampled every 5 ms)."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(0.005)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _return_freed_memory()  # else memory the previous path freed hides this path's peak
            self.base = self._rss()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()


def run_path(model, cells, n_slots, device, path: dict, layer: int) -> dict:
    """Time one path over `cells` (after a 2-cell warm-up); path = embed_token_cells keywords."""
    kw = dict(layer=layer, device=str(device), **path)
    gf.embed_token_cells(model, cells[:2], n_slots, **kw)  # warm-up
    with PeakMemory(device) as mem:
        start, cpu = time.perf_counter(), time.process_time()
        sums, counts = gf.embed_token_cells(model, cells, n_slots, **kw)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "sums": sums, "counts": counts, "peak": mem.peak}


def cosine(a_sums, a_counts, b_sums, b_counts) -> tuple[float, float, float, float]:
    """Per-gene cosine of the mean vectors of (a) and (b): (min, mean), then the same after
    subtracting (a)'s mean vector over genes from both. The centred figure is the stricter one:
    mean vectors share a large common component (more so with random weights), which alone
    makes the raw cosine high."""
    has = (a_counts > 0) & (b_counts > 0)
    a = a_sums[has] / a_counts[has, None]
    b = b_sums[has] / b_counts[has, None]

    def cos(x, y):
        c = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        return float(c.min()), float(c.mean())

    centre = a.mean(0, keepdims=True)
    return cos(a, b) + cos(a - centre, b - centre)


def cpu_peak_tflops(seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    """Achievable matmul rate of this CPU in `dtype` (a stand-in peak for the MFU column)."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e12


def hardware(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [
        f"CPU: {cpu} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})",
        f"torch {torch.__version__}",
    ]
    import transformers

    parts.append(f"transformers {transformers.__version__}")
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    else:
        parts.append("GPU: none used" + (" (CUDA available)" if torch.cuda.is_available() else " (no CUDA device)"))
    return "; ".join(parts)


def tokenizer_rate(n_cells: int = 512) -> str | None:
    """Cells/s of the CPU tokenizer on hESC-sized cells with the real V2 dictionaries, if present."""
    scfm = REPO.parent / "shared" / "scfm" / "geneformer"
    ref = scfm / "precomputed_scregnet_hESC_TFs500" / "fm_embeddings.pt"
    if not ref.is_file():
        return None
    genes = list(torch.load(ref, weights_only=True))
    tok = gf.GeneformerTokenizer(gf.load_dictionaries(scfm, "v2"), genes, "counts")
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 1.0, (n_cells, len(genes))) * (rng.random((n_cells, len(genes))) < 0.8)
    start = time.perf_counter()
    cells = tok.tokenize(x)
    rate = n_cells / (time.perf_counter() - start)
    mean_len = np.mean([len(t) for t, _ in cells])
    return f"CPU tokenizer (V2 dictionaries, {len(genes)} genes, ~{mean_len:.0f} tokens/cell): {rate:,.0f} cells/s (1 thread)"


def card_peak_tflops(device: torch.device) -> tuple[float, str] | None:
    """Dense bf16 peak of a known CUDA card, with the table entry that matched."""
    name = torch.cuda.get_device_name(device)
    for key, tflops in CARD_BF16_DENSE_TFLOPS:
        if key.lower() in name.lower():
            return tflops, f"{name}: {key} dense bf16 spec"
    return None


def profile_cells(config, profile: str, n_cells: int, genes: list[int] | None, seed: int):
    """Synthetic cells of one length profile (or of --genes MIN MAX when given)."""
    lo, hi, universe = PROFILES[profile]
    if genes:
        lo, hi = genes
    elif hi is None:
        hi = gf.V2_MAX_GENES if config.max_position_embeddings >= 4096 else gf.V1_MAX_TOKENS
    return synthetic_cells(config, n_cells, lo, hi, universe=max(universe, hi), seed=seed)


def measure(model, name: str, profile: str, args, device, peak: float) -> list[str]:
    """All paths on one config and length profile: one markdown row each."""
    cfg = model.config
    depth = gf.hidden_state_index(args.layer, cfg.num_hidden_layers)
    cells, n_slots = profile_cells(cfg, profile, args.cells, args.genes, args.seed)
    plain_cells = cells[: args.plain_cells or args.cells]
    # atlas: eager scores of many cells x 4,096^2 x heads would take GBs
    plain_bs = args.plain_batch_size or {("cuda", "atlas"): 8, ("cpu", "beeline"): 8, ("cpu", "atlas"): 2}.get(
        (device.type, profile), 64
    )
    paths = {"plain fp32 eager": (dict(fast=False, batch_size=plain_bs, precision="fp32"), plain_cells)}
    for att in args.attention:
        resolved = gf.resolve_attention(att, device, args.precision, gf.head_dim(cfg))
        label = f"optimised {args.resolved_precision} {att}" + (f" ({resolved})" if att == "auto" else "")
        if device.type == "cuda" and resolved == "packed":  # which kernel ran it: flash varlen or the fallback
            label += f" [{gf.packed_kernel(device, args.precision, gf.head_dim(cfg))}]"
        fast = dict(fast=True, batch_size=args.batch_size, precision=args.precision, attention=att)
        paths[label] = (fast, cells)
    results: dict[str, dict] = {}
    # Paths alternate and the fastest repeat counts, so load from other processes biases none of them.
    for rep in range(args.repeats):
        for label, (kw, subset) in paths.items():
            if rep >= (args.plain_repeats or args.repeats) and not kw["fast"]:
                continue  # the reference's time is only the speed-up baseline; its sums stay the same
            r = run_path(model, subset, n_slots, device, kw, args.layer)
            lengths = np.array([len(t) for t, _ in subset])
            r.update(
                cells=len(subset), tokens=int(lengths.sum()), flops=float(flops_per_cell(cfg, lengths, depth).sum())
            )
            if label not in results or r["seconds"] < results[label]["seconds"]:
                results[label] = r | {"cpu": min(r["cpu"], results.get(label, r)["cpu"])}
            print(f"{name} {profile} {label} (repeat {rep + 1}): {len(subset) / r['seconds']:.2f} cells/s", flush=True)
    plain = results["plain fp32 eager"]
    rows = []
    for label, r in results.items():
        rate = r["cells"] / r["seconds"]
        tflops = r["flops"] / r["seconds"] / 1e12
        cells_col = (
            f"{r['cells']} | {r['tokens'] / r['cells']:.0f} | {r['seconds']:.2f} | {r['cpu']:.1f} | {rate:,.2f} | "
        )
        row = f"| {name} | {profile} | {label} | {cells_col}{r['tokens'] / r['seconds']:,.0f} | "
        row += f"{r['peak'] / 2**20:,.0f} MiB | {tflops:.3f} | {100 * tflops / peak:.1f}% | "
        if r is plain:
            rows.append(row + "1.00x | - | - |")
            continue
        s, c = r["sums"], r["counts"]
        if plain["cells"] < r["cells"]:  # compare on the cells both paths saw
            s, c = gf.embed_token_cells(
                model, plain_cells, n_slots, layer=args.layer, device=str(device), **paths[label][0]
            )
        cmin, cmean, zmin, zmean = cosine(plain["sums"], plain["counts"], s, c)
        speedup = rate / (plain["cells"] / plain["seconds"])
        rows.append(row + f"{speedup:.2f}x | {cmin:.6f} / {cmean:.6f} | {zmin:.6f} / {zmean:.6f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cells", type=int, default=64, help="cells per measurement")
    p.add_argument("--plain-cells", type=int, default=None, help="cells for the plain path (default: --cells)")
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    p.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=["beeline"], help="cell length profiles")
    p.add_argument(
        "--genes", type=int, nargs=2, default=None, metavar=("MIN", "MAX"), help="ranked genes per cell (overrides)"
    )
    p.add_argument("--layer", type=int, default=-2)
    p.add_argument(
        "--plain-batch-size", type=int, default=None, help="default: 64 (beeline) / 8 (atlas) on CUDA, 8 / 2 on CPU"
    )
    p.add_argument("--batch-size", type=int, default=None, help="optimised paths; default: from free memory")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="optimised paths' autocast dtype; auto = bf16 on CUDA, fp32 on CPU",
    )
    p.add_argument(
        "--attention",
        nargs="+",
        choices=list(gf.ATTENTION_CHOICES),
        default=["packed", "sdpa"],
        help="optimised paths to run, one row each (auto = what the embedder picks on this device)",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="for MFU; default: the card's dense bf16 spec on CUDA (H100/H200 table), "
        "a measured matmul rate on CPU in the optimised paths' precision",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternate the paths N times; report each one's fastest")
    p.add_argument(
        "--plain-repeats", type=int, default=None, help="time the plain path in only the first N repeats (default: all)"
    )
    p.add_argument("--out", type=Path, default=None, help="append the table (with hardware and command) to this .md")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    args.resolved_precision = gf.resolve_precision(args.precision, device)
    dtype = torch.bfloat16 if args.resolved_precision == "bf16" else torch.float32
    if args.peak_tflops:
        peak, peak_note = args.peak_tflops, f"{args.peak_tflops:.3g} TFLOP/s (--peak-tflops)"
    elif device.type == "cuda":
        card = card_peak_tflops(device)
        if card is None:
            p.error(f"unknown card {torch.cuda.get_device_name(device)!r}: give its dense bf16 peak with --peak-tflops")
        peak, peak_note = card[0], f"{card[0]:.3g} TFLOP/s ({card[1]})"
    else:
        peak = cpu_peak_tflops(dtype=dtype)
        peak_note = f"{peak:.3g} TFLOP/s (measured {args.resolved_precision} matmul)"

    load_before = os.getloadavg()
    header = (
        "| config | lengths | path | cells | tokens/cell | s | host CPU s | cells/s | tokens/s | peak mem | model TFLOP/s | MFU | "
        "speed-up | cosine min / mean | centred cosine min / mean |\n" + "|---" * 15 + "|"
    )
    rows = []
    for name in args.configs:
        model = gf.build_random_model(args.config_dir / name, seed=args.seed)
        for profile in args.profiles:
            rows += measure(model, name, profile, args, device, peak)
        del model
    tok_line = tokenizer_rate()
    table = header + "\n" + "\n".join(rows)
    print(table)
    if tok_line:
        print(tok_line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        threads = "".join(f"{k}={os.environ[k]} " for k in ("OMP_NUM_THREADS",) if k in os.environ)
        cmd = f"{threads}python benchmarks/embedding_throughput.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        block = [
            f"### {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} - device {args.device}",
            "",
            f"Hardware: {hardware(device)}",
            f"Command: `{cmd}`",
            "Load average (1/5/15 min) before / after: "
            + " / ".join(", ".join(f"{v:.2f}" for v in la) for la in (load_before, os.getloadavg()))
            + f" ({os.cpu_count()} logical cores; other processes share this machine)",
            f"Layer {args.layer}; plain batch size {args.plain_batch_size or PLAIN_BATCH_DEFAULT[device.type]}; "
            f"optimised precision {args.resolved_precision}, batch size "
            f"{args.batch_size or 'from free memory'}; best of {args.repeats} alternating repeat(s) "
            f"(plain: {min(args.plain_repeats or args.repeats, args.repeats)}); MFU peak "
            f"{peak_note}; memory = "
            + ("max CUDA allocated" if device.type == "cuda" else "peak RSS increase during the run"),
            "",
            table,
            "",
        ] + ([tok_line, ""] if tok_line else [])
        with open(args.out, "a") as fh:
            fh.write("\n".join(block) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

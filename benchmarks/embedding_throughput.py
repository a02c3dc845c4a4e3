#!/usr/bin/env python
"""Geneformer embedding throughput: the plain fp32 eager reference path vs the optimised path.

Random-weight models with the exact architectures of the published checkpoints (configs in
../shared/scfm/geneformer/configs), BEELINE-sized synthetic cells (500-1,000 ranked genes each,
drawn from a 2,000-gene universe, so genes recur across cells as in a real dataset).

(a) plain: full BertForMaskedLM (MLM head included, as Geneformer's own extractor runs it), fp32,
    eager attention, output_hidden_states=True, batches in input order padded to the longest cell.
(b) optimised: GeneformerEmbedder's fast path (base BertModel cut after the requested layer, SDPA,
    bf16 autocast on CUDA (--precision bf16 also on CPU), length-sorted batches sized from free memory, on-device index_add_).

Model FLOPs per cell = over the layers the requested hidden state needs (L-1 for layer -2):
2 x non-embedding params of those layers x tokens + 4 x tokens^2 x hidden (QK^T and AV).
The same useful work is credited to both paths. MFU = achieved model FLOP/s / --peak-tflops.

    python benchmarks/embedding_throughput.py --device cpu --cells 64 --configs gf-6L-30M-i2048 \
        --out benchmarks/results/embedding.md
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
H200_BF16_DENSE_TFLOPS = 989.0  # vendor spec, dense bf16 (the docs use ~790 as a practical bound)


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


def run_path(model, cells, n_slots, device, fast: bool, batch_size, layer: int, precision: str = "auto") -> dict:
    kw = dict(layer=layer, device=str(device), fast=fast, batch_size=batch_size, precision=precision)
    gf.embed_token_cells(model, cells[:2], n_slots, **kw)  # warm-up
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        sums, counts = gf.embed_token_cells(model, cells, n_slots, **kw)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "sums": sums, "counts": counts, "peak": mem.peak}


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cells", type=int, default=64, help="cells per measurement")
    p.add_argument("--plain-cells", type=int, default=None, help="cells for the plain path (default: --cells)")
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    p.add_argument(
        "--genes", type=int, nargs=2, default=[500, 1000], metavar=("MIN", "MAX"), help="ranked genes per cell"
    )
    p.add_argument("--layer", type=int, default=-2)
    p.add_argument("--plain-batch-size", type=int, default=None, help="default: 8 on CPU, 64 on CUDA")
    p.add_argument("--batch-size", type=int, default=None, help="optimised path; default: from free memory")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="optimised path's autocast dtype; auto = bf16 on CUDA, fp32 on CPU",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help=f"for MFU; default: {H200_BF16_DENSE_TFLOPS} on CUDA (H200 bf16), a measured matmul rate on CPU in the optimised path's precision",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternate the paths N times; report each one's fastest")
    p.add_argument("--out", type=Path, default=None, help="append the table (with hardware and command) to this .md")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    plain_bs = args.plain_batch_size or (64 if device.type == "cuda" else 8)
    precision = gf.resolve_precision(args.precision, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak = args.peak_tflops or (H200_BF16_DENSE_TFLOPS if device.type == "cuda" else cpu_peak_tflops(dtype=dtype))
    peak_note = f"{peak:.3g} TFLOP/s" + (
        f" (measured {precision} matmul)" if not args.peak_tflops and device.type == "cpu" else ""
    )

    load_before = os.getloadavg()
    header = (
        "| config | path | cells | tokens/cell | s | cells/s | tokens/s | peak mem | model TFLOP/s | MFU | "
        "speed-up | cosine min / mean | centred cosine min / mean |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    opt = f"optimised {precision}"
    for name in args.configs:
        model = gf.build_random_model(args.config_dir / name, seed=args.seed)
        cfg = model.config
        depth = gf.hidden_state_index(args.layer, cfg.num_hidden_layers)
        cells, n_slots = synthetic_cells(cfg, args.cells, *args.genes, universe=2000, seed=args.seed)
        plain_cells = cells[: args.plain_cells or args.cells]
        results: dict[str, dict] = {}
        # Paths alternate and the fastest repeat counts, so load from other processes biases neither.
        for rep in range(args.repeats):
            for label, fast, subset, bs in [
                ("plain fp32 eager", False, plain_cells, plain_bs),
                (opt, True, cells, args.batch_size),
            ]:
                r = run_path(model, subset, n_slots, device, fast, bs, args.layer, args.precision if fast else "fp32")
                lengths = np.array([len(t) for t, _ in subset])
                r.update(
                    cells=len(subset), tokens=int(lengths.sum()), flops=float(flops_per_cell(cfg, lengths, depth).sum())
                )
                if label not in results or r["seconds"] < results[label]["seconds"]:
                    results[label] = r
                print(f"{name} {label} (repeat {rep + 1}): {len(subset) / r['seconds']:.2f} cells/s", flush=True)
        a, b = results["plain fp32 eager"], results[opt]
        n_cmp = a["cells"]
        # cosine on the cells both paths saw: recompute the optimised sums on the plain subset if it is smaller
        if n_cmp < b["cells"]:
            s, c = gf.embed_token_cells(
                model,
                plain_cells,
                n_slots,
                layer=args.layer,
                device=str(device),
                fast=True,
                batch_size=args.batch_size,
                precision=args.precision,
            )
        else:
            s, c = b["sums"], b["counts"]
        cmin, cmean, zmin, zmean = cosine(a["sums"], a["counts"], s, c)
        speedup = (b["cells"] / b["seconds"]) / (a["cells"] / a["seconds"])
        for label, r in results.items():
            rate = r["cells"] / r["seconds"]
            tflops = r["flops"] / r["seconds"] / 1e12
            rows.append(
                f"| {name} | {label} | {r['cells']} | {r['tokens'] / r['cells']:.0f} | {r['seconds']:.2f} | {rate:,.2f} | "
                f"{r['tokens'] / r['seconds']:,.0f} | {r['peak'] / 2**20:,.0f} MiB | {tflops:.3f} | {100 * tflops / peak:.1f}% | "
                + (
                    "1.00x | - | - |"
                    if r is a
                    else f"{speedup:.2f}x | {cmin:.6f} / {cmean:.6f} | {zmin:.6f} / {zmean:.6f} |"
                )
            )
        del model
    tok_line = tokenizer_rate()
    table = header + "\n" + "\n".join(rows)
    print(table)
    if tok_line:
        print(tok_line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python benchmarks/embedding_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
        block = [
            f"### {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} - device {args.device}",
            "",
            f"Hardware: {hardware(device)}",
            f"Command: `{cmd}`",
            "Load average (1/5/15 min) before / after: "
            + " / ".join(", ".join(f"{v:.2f}" for v in la) for la in (load_before, os.getloadavg()))
            + f" ({os.cpu_count()} logical cores; other processes share this machine)",
            f"Layer {args.layer}; plain batch size {plain_bs}; optimised precision "
            f"{precision}, batch size "
            f"{args.batch_size or 'from free memory'}; best of {args.repeats} alternating repeat(s); MFU peak {peak_note}; memory = "
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

"""Fused attention on the CPU by head width: `scaled_dot_product_attention` forward + backward on (B, heads, N, d)
against the same attention with each head zero-padded to 16 dims (the scale kept at 1/sqrt(d): the padded dims add
exact zeros to q . k and give zero output columns), interleaved call by call, median of `--repeats`.

This is what `CrossAttention.forward` (chapter 10) decides on: SDPA's fused CPU kernel runs heads narrower than 16
slowly, so the layer pads their projection weights with zero rows there. Shapes: the self-attentions of
bench_unet's conditional UNet at its first level (B 8, 4 heads, 16x16 = 256 tokens, d 8), the same with d 4, and
widths 16 and 24 (no padding: to show where it stops paying).

    python benchmarks/bench_head_dim.py --threads 1 [--repeats 15] [--out benchmarks/results/head_dim_cpu.json]
"""
import argparse, json, statistics, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir

CASES = [  # (B, heads, N, M, d, padded width)
    (8, 4, 256, 256, 8, 16), (8, 4, 256, 256, 4, 16), (8, 4, 256, 16, 8, 16),
    (8, 4, 64, 64, 16, 32), (8, 4, 64, 64, 24, 32)]


def attention(q, k, v, width):
    "SDPA on heads of width d, or padded with zeros to `width` and cut back."
    d = q.shape[-1]
    if width == d: return F.scaled_dot_product_attention(q, k, v)
    qp, kp, vp = (F.pad(z, (0, width - d)) for z in (q, k, v))
    return F.scaled_dot_product_attention(qp, kp, vp, scale=d ** -0.5)[..., :d]


def one_case(B, h, N, M, d, width, repeats):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, h, N, d, generator=g, requires_grad=True)
    k, v = (torch.randn(B, h, M, d, generator=g, requires_grad=True) for _ in range(2))
    grad = torch.randn(B, h, N, d, generator=g)
    with torch.no_grad(): err = float((attention(q, k, v, width) - attention(q, k, v, d)).abs().max())
    def step(w):
        attention(q, k, v, w).backward(grad)
    times = {"plain": [], "padded": []}
    for _ in range(2): step(d); step(width)
    for _ in range(repeats):
        for name, w in (("plain", d), ("padded", width)):
            t0 = time.perf_counter(); step(w); times[name].append(time.perf_counter() - t0)
    plain, padded = (1e3 * statistics.median(times[k]) for k in ("plain", "padded"))
    return {"shape": [B, h, N, M, d], "padded_to": width, "plain_ms": plain, "padded_ms": padded,
            "speedup": plain / padded, "max_abs_diff": err}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/head_dim_cpu.json")
    ap.add_argument("--smoke", action="store_true", help="2 repeats, written to a temporary folder")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = smoke_dir("head_dim") / "head_dim_cpu.json" if a.smoke else Path(a.out)
    meta = run_meta(smoke=a.smoke)
    rows = [one_case(*c, 2 if a.smoke else a.repeats) for c in CASES]
    lines = ["| B, heads, N, M, d | padded to | fwd + bwd ms (d / padded) | speedup | max abs diff |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {', '.join(map(str, r['shape']))} | {r['padded_to']} | {r['plain_ms']:.2f} / {r['padded_ms']:.2f} | "
                     f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    res = {"meta": meta, "threads": a.threads, "repeats": a.repeats, "rows": rows, "table_md": "\n".join(lines)}
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + "\n")
    print(res["table_md"]); print(f"wrote {out}")


if __name__ == "__main__": main()

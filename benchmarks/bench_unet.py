"""ldm_nb's UNets against diffusers' at the same architecture (not a test): forward and forward + backward time.

usage: python benchmarks/bench_unet.py [--out benchmarks/results/unet_cpu.json] [--threads 1 2] [--repeats 7]
                                       [--device cpu] [--variants fp32] [--profile] [--smoke]

Two pairs, each with the same parameter count, timed interleaved in one process (ours, theirs, ours, theirs ...;
the median of `--repeats` calls after warm-up), at each thread count of `--threads`:
* unconditional: `UNetModel` (model_channels 32, channel_mult (1, 2, 2), 2 res blocks, attention at rate 2, 4 heads)
  against `UNet2DModel` (block_out_channels (32, 64, 64), an attention down/up block, scale-shift), batch 16, 3x32x32;
* conditional (Stable-Diffusion-shaped, small): `ConditionalUNet` with cross-attention at rates 1, 2, 4
  (channel_mult (1, 2, 4, 4), context_dim 64, 4 heads) against `UNet2DConditionModel` (three CrossAttn down/up
  blocks), batch 8, 4x16x16 latents, a context of 16 tokens.
"ratio" is diffusers' time / ours (above 1: ldm_nb is faster). `--profile` adds each model's top operators by self
CPU time over 3 forwards and over 3 forward + backward passes (torch.profiler). `--variants` (for `--device cuda`): fp32, bf16 (autocast),
channels_last, compile (torch.compile of both models). The JSON's "meta" says how it was made (commit, command line,
versions, date). --smoke: one repeat, tiny batches, written to a temp folder.
"""
import argparse, json, statistics, sys, time
from contextlib import nullcontext
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir


def models(kind: str):
    "(ours, diffusers', make_inputs(batch, device) -> (our kwargs, their kwargs)) for one architecture."
    from diffusers import UNet2DModel, UNet2DConditionModel
    if kind == "unconditional":
        from ldm_nb.unet import UNetModel, UNetConfig
        ours = UNetModel(UNetConfig(image_size=32, in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2, 2),
                                    num_res_blocks=2, attention_resolutions=(2,), num_heads=4))
        theirs = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(32, 64, 64),
                             down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                             norm_num_groups=32, attention_head_dim=16, resnet_time_scale_shift="scale_shift")
        def inputs(B, device, g):
            x = torch.randn(B, 3, 32, 32, generator=g).to(device); t = torch.randint(0, 1000, (B,), generator=g).to(device)
            return dict(x=x, timesteps=t), dict(sample=x, timestep=t)
        return ours, theirs, inputs
    from ldm_nb.attention import ConditionalUNet, ConditionalUNetConfig
    ours = ConditionalUNet(ConditionalUNetConfig(image_size=16, in_channels=4, out_channels=4, model_channels=32,
                                                 channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_resolutions=(1, 2, 4),
                                                 num_heads=4, context_dim=64, transformer_depth=1, use_scale_shift_norm=False))
    theirs = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
                                  block_out_channels=(32, 64, 128, 128),
                                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                  cross_attention_dim=64, attention_head_dim=4, norm_num_groups=32)
    def inputs(B, device, g):
        x = torch.randn(B, 4, 16, 16, generator=g).to(device); t = torch.randint(0, 1000, (B,), generator=g).to(device)
        ctx = torch.randn(B, 16, 64, generator=g).to(device)
        return dict(x=x, timesteps=t, context=ctx), dict(sample=x, timestep=t, encoder_hidden_states=ctx)
    return ours, theirs, inputs


def out_of(y): return y.sample if hasattr(y, "sample") else y


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device); t0 = time.perf_counter(); fn(); sync(device)
    return time.perf_counter() - t0


def bench_pair(kind, B, device, variant, repeats, warmup=2):
    "Median seconds per call of ours and theirs, forward and forward+backward, interleaved call by call."
    ours, theirs, inputs = models(kind)
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    ours, theirs = ours.to(device), theirs.to(device)
    a, b = inputs(B, device, torch.Generator().manual_seed(0))
    if variant == "channels_last":
        ours, theirs = ours.to(memory_format=torch.channels_last), theirs.to(memory_format=torch.channels_last)
        a["x"] = b["sample"] = a["x"].to(memory_format=torch.channels_last)
    if variant == "compile": ours, theirs = torch.compile(ours), torch.compile(theirs)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16" else nullcontext()
    def fwd(m, kw):
        with torch.no_grad(), amp: return out_of(m(**kw))
    def fwd_bwd(m, kw):
        with amp: y = out_of(m(**kw))
        y.float().square().mean().backward()
        m.zero_grad(set_to_none=True)
    res = {"batch": B, "params": {"ours": n_ours, "diffusers": n_theirs}}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
        for _ in range(warmup): fn(ours, a); fn(theirs, b)
        t_ours, t_theirs = [], []
        for _ in range(repeats):
            t_ours.append(timed(lambda: fn(ours, a), device)); t_theirs.append(timed(lambda: fn(theirs, b), device))
        mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
        res[name] = {"ours_ms": 1e3 * mo, "diffusers_ms": 1e3 * mt, "ratio": mt / mo,
                     "ours_all_ms": [1e3 * t for t in t_ours], "diffusers_all_ms": [1e3 * t for t in t_theirs]}
    return res


def top_ops(kind, B, device, n=12):
    "Each model's top operators by self CPU time over 3 forwards, with their share of the total."
    from torch.profiler import profile, ProfilerActivity
    ours, theirs, inputs = models(kind)
    a, b = inputs(B, device, torch.Generator().manual_seed(0))
    out = {}
    def fwd_bwd(m, kw): out_of(m(**kw)).float().pow(2).mean().backward()
    for name, m, kw in (("ours", ours.to(device), a), ("diffusers", theirs.to(device), b)):
        with torch.no_grad():
            m(**kw)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3): m(**kw)
        fwd_bwd(m, kw)
        with profile(activities=[ProfilerActivity.CPU]) as prof_b:
            for _ in range(3): fwd_bwd(m, kw)
        out[name] = {}
        for key, pr in (("top", prof), ("top_fwd_bwd", prof_b)):
            ev = [e for e in pr.key_averages()]
            total = sum(e.self_cpu_time_total for e in ev)
            ev.sort(key=lambda e: -e.self_cpu_time_total)
            if key == "top":
                out[name]["calls_per_forward"] = {k: sum(e.count for e in ev if e.key == k) // 3 for k in ("aten::convolution", "aten::linear")}
            out[name][key] = [{"op": e.key, "share": e.self_cpu_time_total / total, "ms": e.self_cpu_time_total / 3e3,
                               "calls": e.count // 3} for e in ev[:n]]
    return out


def table(res) -> str:
    rows = ["| model | threads | variant | forward ms (ours / diffusers) | fwd + bwd ms (ours / diffusers) | diffusers' time / ours |",
            "|---|---|---|---|---|---|"]
    for r in res["runs"]:
        f, fb = r["forward"], r["forward_backward"]
        rows.append(f"| {r['model']} | {r['threads']} | {r['variant']} | {f['ours_ms']:.1f} / {f['diffusers_ms']:.1f} | "
                    f"{fb['ours_ms']:.1f} / {fb['diffusers_ms']:.1f} | {f['ratio']:.2f} forward, {fb['ratio']:.2f} fwd+bwd |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/unet_cpu.json")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure (CPU)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", nargs="+", default=["fp32"], choices=["fp32", "bf16", "channels_last", "compile"])
    ap.add_argument("--models", nargs="+", default=["unconditional", "conditional"], choices=["unconditional", "conditional"])
    ap.add_argument("--profile", action="store_true", help="add each model's top operators (torch.profiler, CPU)")
    ap.add_argument("--smoke", action="store_true", help="one repeat, tiny batches, a temp folder: checks the script runs")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    batch = {"unconditional": 2 if a.smoke else 16, "conditional": 2 if a.smoke else 8}
    repeats = 1 if a.smoke else a.repeats
    out = Path(a.out) if not a.smoke else smoke_dir("unet") / "unet.json"
    torch.manual_seed(0)
    runs = []
    for th in (a.threads if device.type == "cpu" else [torch.get_num_threads()]):
        torch.set_num_threads(th)
        for kind in a.models:
            for v in a.variants:
                r = bench_pair(kind, batch[kind], device, v, repeats)
                runs.append({"model": kind, "threads": th, "variant": v, "device": str(device), **r})
                print(f"{kind:13s} threads={th} {v:13s} forward {r['forward']['ours_ms']:.1f} / {r['forward']['diffusers_ms']:.1f} ms "
                      f"(x{r['forward']['ratio']:.2f}), fwd+bwd {r['forward_backward']['ours_ms']:.1f} / "
                      f"{r['forward_backward']['diffusers_ms']:.1f} ms (x{r['forward_backward']['ratio']:.2f})", flush=True)
    res = {"meta": run_meta(smoke=a.smoke), "runs": runs}
    if a.profile:
        torch.set_num_threads(max(a.threads) if device.type == "cpu" else torch.get_num_threads())
        res["profile"] = {k: top_ops(k, batch[k], device) for k in a.models}
    res["table_md"] = table(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(res["table_md"]); print(f"written to {out}")


if __name__ == "__main__":
    main()

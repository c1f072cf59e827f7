"""Benchmark the MNIST DDPM on this machine (not a test): training steps/s, samples/s, and the samplers' own cost.

usage: python benchmarks/bench_ddpm.py [--out benchmarks/results/ddpm_cpu.json] [--threads N] [--device cpu] [--smoke]

* training: the real `train()` loop on MNIST with `mnist_config`, timed from metrics.jsonl after warm-up steps;
* sampling: DDIM (S=50) and ancestral DDPM (T=1000) from the trained-for-a-few-steps model, samples per second;
* sampler overhead: each sampler's loop with the UNet replaced by a no-op that returns a cached tensor, per step
  (per network call for chapter 07b's solvers), as a percentage of one UNet forward at the same batch size (the part
  of sampling that is not the network).
The JSON's "meta" says how it was made (git commit, command line, versions, threads, date).
--smoke: a tiny run (2 timed steps, small batches) that only checks the script end to end, written to a temp folder."""
import argparse, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path
import torch
from torch import nn
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir


class CachedOutput(nn.Module):
    "A stand-in network: returns the same precomputed tensor for every call (costs nothing)."
    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.register_buffer("out", out)
    def forward(self, x, t, **cond): return self.out


def best_of(fn, repeats: int) -> float:
    "Median wall time of `fn()` over `repeats` calls (after one warm-up call)."
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/ddpm_cpu.json")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps (after 3 warm-up steps)")
    ap.add_argument("--sample-batch", type=int, default=64)
    ap.add_argument("--ddpm-batch", type=int, default=16, help="batch of the (long) full-T ancestral sampling run")
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script, written to a temp folder (not --out)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train_steps, args.sample_batch, args.ddpm_batch = 2, 4, 2
        args.out = str(smoke_dir("ddpm") / Path(args.out).name)
    if args.threads: torch.set_num_threads(args.threads)
    from ldm_nb.train_ddpm import mnist_config, train
    from ldm_nb.ddpm import DDPM, DDPMConfig
    from ldm_nb.ddim import DDIMSampler
    from ldm_nb.unet import count_params
    from ldm_nb.core import get_device
    dev = get_device(args.device)
    res = dict(device=str(dev), torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               machine=platform.machine(), python=platform.python_version(),
               loadavg_before=list(os.getloadavg()) if hasattr(os, "getloadavg") else None, meta=run_meta(args.smoke))

    # 1. training steps/s: the real loop, timed between log lines after warm-up
    warm, n = 3, args.train_steps
    with tempfile.TemporaryDirectory() as tmp:
        cfg = mnist_config(f"{tmp}/run", steps=warm + n, log_every=1, ckpt_every=10**6, sample_every=0, n_sample=1,
                           device=str(dev))
        ddpm = train(cfg, progress=False)
        lines = [json.loads(l) for l in open(f"{tmp}/run/metrics.jsonl")]
    secs = {l["step"]: l["seconds"] for l in lines}
    dt = secs[warm + n] - secs[warm]
    res["train"] = dict(config="mnist_config", batch_size=cfg.batch_size, params=count_params(ddpm.model),
                        timed_steps=n, seconds=round(dt, 3), steps_per_s=round(n / dt, 3),
                        images_per_s=round(n * cfg.batch_size / dt, 1))
    print("train:", res["train"], flush=True)

    # 2. samples/s with the real network
    net = ddpm.model.eval()
    B, shape = args.sample_batch, (1, 28, 28)
    g = lambda: torch.Generator(dev).manual_seed(0)
    S = 50
    t_ddim = best_of(lambda: DDIMSampler(ddpm).sample((B, *shape), sample_steps=S, generator=g(), progress=False), 1)
    Bd = args.ddpm_batch
    t0 = time.perf_counter(); ddpm.p_sample_loop((Bd, *shape), generator=g(), progress=False); t_ddpm = time.perf_counter() - t0
    res["sample"] = dict(ddim=dict(S=S, batch=B, seconds=round(t_ddim, 2), samples_per_s=round(B / t_ddim, 2)),
                         ddpm=dict(T=ddpm.num_timesteps, batch=Bd, seconds=round(t_ddpm, 2), samples_per_s=round(Bd / t_ddpm, 3)))
    print("sample:", res["sample"], flush=True)

    # 3. the samplers' own cost per step vs one UNet forward, at batch B
    x = torch.randn(B, *shape, device=dev); t = torch.full((B,), 500, device=dev, dtype=torch.long)
    with torch.no_grad(): fwd = best_of(lambda: net(x, t), 20)
    noop = DDPM(CachedOutput(torch.randn(B, *shape, device=dev) * 0.1), DDPMConfig(use_ema=False)).to(dev)
    T = noop.num_timesteps
    loop_ddpm = best_of(lambda: noop.p_sample_loop((B, *shape), generator=g(), progress=False), 3) / T
    loop_ddim = best_of(lambda: DDIMSampler(noop).sample((B, *shape), sample_steps=S, generator=g(), progress=False), 5) / S
    loop_ddim_eta = best_of(lambda: DDIMSampler(noop).sample((B, *shape), sample_steps=S, eta=1., generator=g(), progress=False),
                            5) / S
    from ldm_nb.solvers import ODESampler, sampler_calls
    loop_ode = {sv: best_of(lambda sv=sv: ODESampler(noop, solver=sv).sample((B, *shape), sample_steps=S, generator=g(), progress=False), 5)
                    / sampler_calls(sv, S, T) for sv in ("dpmpp-2m", "euler", "heun")}
    res["overhead"] = dict(batch=B, unet_forward_ms=round(fwd * 1e3, 3),
                           ddpm_step_ms=round(loop_ddpm * 1e3, 4), ddpm_pct_of_forward=round(100 * loop_ddpm / fwd, 3),
                           ddim_step_ms=round(loop_ddim * 1e3, 4), ddim_pct_of_forward=round(100 * loop_ddim / fwd, 3),
                           ddim_eta1_step_ms=round(loop_ddim_eta * 1e3, 4),
                           ddim_eta1_pct_of_forward=round(100 * loop_ddim_eta / fwd, 3),
                           **{f"{k.replace('-', '_')}_{u}": v for sv, t in loop_ode.items() for k, u, v in
                              ((sv, "call_ms", round(t * 1e3, 4)), (sv, "pct_of_forward", round(100 * t / fwd, 3)))})
    print("overhead:", res["overhead"], flush=True)
    res["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

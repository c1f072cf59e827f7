"""The DDIM table of chapter 07 (not a test): Frechet distance and seconds per sample of DDPM (T = 1000 ancestral steps)
and DDIM with S steps and noise eta, from one MNIST DDPM trained for the book.

usage: python benchmarks/bench_ddim_table.py [--run-dir runs/ddim-book] [--train-steps 3000] [--n 1000]
                                             [--S 10,20,50,100] [--etas 0,0.5,1] [--threads 1]
                                             [--out benchmarks/results/ddim_table.json]

* the model: `mnist_config` (chapter 15's default MNIST DDPM, 0.29 M parameters) trained for --train-steps steps in
  --run-dir; the script trains it (or resumes it) when the checkpoint there has fewer steps, so this one command
  reproduces the table from nothing (`ldm-nb demo --run-dir runs/ddim-book --steps 3000` trains the same model);
* samples: n digits per sampler from the EMA weights, in chunks of --batch with seed = chunk index, so every sampler
  starts from the same x_T (common random numbers: the differences between rows are the samplers', not the noise's);
  DDPM clips its x0 prediction to [-1, 1] (the CompVis default, `clip_denoised=True`), DDIM does not (the DDIM paper's
  code does not);
* FD: chapter 14's classifier features of the n samples against n random real test digits, next to the floor (the same
  distance between two disjoint sets of n real digits: what a perfect sampler would score at this n);
* seconds per sample: wall time of sampling / n at batch --batch with --threads threads (this machine is shared:
  compare rows of one run, not runs).
Each row is written to the JSON as soon as it is done, and a rerun with the same model and n keeps the rows it has
(so an interrupted run continues). Writes JSON, a markdown table (.md) and a figure (.png) with the same stem."""
import argparse, json, math, os, platform, sys, time
from pathlib import Path
import torch

# Table 1 of Song, Meng & Ermon (2021), CIFAR-10 FID, for the comparison of shapes (not of values)
PAPER = {"S": [10, 20, 50, 100], "eta": {0.0: [13.36, 6.84, 4.67, 4.16], 1.0: [41.07, 18.36, 8.01, 5.78]}}


def ensure_model(run_dir: str, steps: int, device: str) -> Path:
    "Train (or resume) the book's MNIST DDPM in `run_dir` up to `steps` steps; return its checkpoint path."
    from ldm_nb.train import mnist_config, train, load_checkpoint, run_paths
    cfg = mnist_config(run_dir, steps=steps, sample_every=0, device=device)
    ck = run_paths(run_dir)["ckpt"]
    done = load_checkpoint(ck, cfg)["step"] if ck.exists() else 0
    if done > steps: raise SystemExit(f"{ck} has {done} steps, more than --train-steps {steps}: use another --run-dir")
    if done < steps:
        print(f"training the book model: step {done} -> {steps} in {run_dir}", flush=True)
        train(cfg, resume=done > 0, progress=False)
    return ck


def draw(ck: Path, sampler: str, n: int, batch: int, S: int = 0, eta: float = 0.) -> tuple[torch.Tensor, float]:
    "n samples (chunk i has seed i) and the sampling wall time in seconds."
    from ldm_nb.train import sample_checkpoint
    xs, secs = [], 0.
    for i, lo in enumerate(range(0, n, batch)):
        t0 = time.perf_counter()
        x, _ = sample_checkpoint(ck, n=min(batch, n - lo), sampler=sampler, steps=S or 50, eta=eta, seed=i, device="cpu")
        secs += time.perf_counter() - t0
        xs.append(x)
    return torch.cat(xs), secs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/ddim_table.json")
    ap.add_argument("--run-dir", default="runs/ddim-book")
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=1000, help="samples per sampler (and real digits in the reference), <= 5000")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--S", default="10,20,50,100")
    ap.add_argument("--etas", default="0,0.5,1")
    ap.add_argument("--skip-ddpm", action="store_true", help="leave out the (long) DDPM-1000 row")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if not 2 <= args.n <= 5000: ap.error("--n must be in [2, 5000]")
    torch.set_num_threads(args.threads)
    from ldm_nb.train import load_checkpoint, save_png
    from ldm_nb.data import load_mnist
    from ldm_nb.metrics import get_mnist_classifier, fd_score, fd_floor, feature_stats, classifier_features

    ck = ensure_model(args.run_dir, args.train_steps, "cpu")
    info = load_checkpoint(ck)
    out = Path(args.out)
    key = dict(model_step=info["step"], n=args.n, batch=args.batch)
    old = json.loads(out.read_text()) if out.exists() else {}
    done = {(r["sampler"], r["S"], r["eta"]): r for r in old.get("rows", [])} if all(old.get(k) == v for k, v in key.items()) else {}
    clf = get_mnist_classifier()
    real = load_mnist("test")[0][torch.randperm(10000, generator=torch.Generator().manual_seed(1))[: args.n]]
    ref = feature_stats(classifier_features(real, clf))
    res = dict(**key, run_dir=args.run_dir, train_seconds=round(info["seconds"], 1), config="mnist_config",
               device="cpu", torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               machine=platform.machine(), python=platform.python_version(),
               loadavg_before=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               fd_floor=fd_floor(args.n, clf), paper_table1_cifar10=PAPER, rows=[])

    todo = [("ddim", S, float(e)) for e in args.etas.split(",") for S in (int(s) for s in args.S.split(","))]
    if not args.skip_ddpm: todo.append(("ddpm", 1000, None))
    for sampler, S, eta in todo:
        if (sampler, S, eta) in done: res["rows"].append(done[(sampler, S, eta)]); continue
        x, secs = draw(ck, sampler, args.n, args.batch, S if sampler == "ddim" else 0, eta or 0.)
        r = dict(sampler=sampler, S=S, eta=eta, fd=fd_score(x, ref, clf), seconds=round(secs, 1),
                 s_per_sample=secs / args.n, model_calls_per_sample=S)
        res["rows"].append(r)
        print(json.dumps(r), flush=True)
        save_png(x[:16], out.with_name(f"{out.stem}_{sampler}_S{S}" + (f"_eta{eta:g}" if eta is not None else "") + ".png"), nrow=16)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")                 # after every row: an interrupted run keeps it
    res["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    figure(res, out.with_suffix(".png"))
    print(markdown(res))


def markdown(res: dict) -> str:
    rows = {(r["sampler"], r["S"], r["eta"]): r for r in res["rows"]}
    Ss = sorted({r["S"] for r in res["rows"] if r["sampler"] == "ddim"})
    etas = sorted({r["eta"] for r in res["rows"] if r["sampler"] == "ddim"})
    lines = [f"MNIST DDPM (`mnist_config`, {res['model_step']} steps, EMA weights), n = {res['n']} samples per sampler "
             f"against {res['n']} real test digits; FD floor (real vs real at n = {res['n']}) **{res['fd_floor']:.2f}**. "
             f"FD / seconds per sample (batch {res['batch']}, {res['threads']} thread(s), {res['device']}, torch {res['torch']}).",
             "", "| sampler | " + " | ".join(f"S = {S}" for S in Ss) + " |", "|---|" + "---|" * len(Ss)]
    for e in etas:
        cells = [f"{rows[('ddim', S, e)]['fd']:.2f} / {rows[('ddim', S, e)]['s_per_sample']:.3f} s" if ('ddim', S, e) in rows
                 else "-" for S in Ss]
        lines.append(f"| DDIM η = {e:g} | " + " | ".join(cells) + " |")
    if ("ddpm", 1000, None) in rows:
        r = rows[("ddpm", 1000, None)]
        lines.append(f"| DDPM, T = 1000 | {r['fd']:.2f} / {r['s_per_sample']:.3f} s (1000 steps) |" + " |" * (len(Ss) - 1))
    p = res["paper_table1_cifar10"]
    lines += ["", "DDIM paper, Table 1 (CIFAR-10 FID with Inception features; the shape to compare, not the values):", "", "| η | " + " | ".join(f"S = {S}" for S in p["S"]) + " |", "|---|" + "---|" * len(p["S"])]
    for e, v in p["eta"].items(): lines.append(f"| {float(e):g} | " + " | ".join(f"{x:.2f}" for x in v) + " |")
    lines += ["", f"Load average before/after: {res['loadavg_before']} / {res.get('loadavg_after')}.", ""]
    return "\n".join(lines)


def figure(res: dict, path: Path) -> None:
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    for e in sorted({r["eta"] for r in res["rows"] if r["sampler"] == "ddim"}):
        rr = sorted((r for r in res["rows"] if r["sampler"] == "ddim" and r["eta"] == e), key=lambda r: r["S"])
        ax.plot([r["S"] for r in rr], [r["fd"] for r in rr], "o-", label=f"DDIM η = {e:g}")
    for r in res["rows"]:
        if r["sampler"] == "ddpm": ax.axhline(r["fd"], color="k", ls="--", lw=1, label="DDPM, 1000 steps")
    ax.axhline(res["fd_floor"], color="gray", ls=":", lw=1, label=f"floor (n = {res['n']})")
    ax.set_xscale("log"); ax.set_xlabel("sampling steps S"); ax.set_ylabel("FD (classifier features)")
    ax.set_xticks([10, 20, 50, 100]); ax.set_xticklabels(["10", "20", "50", "100"]); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)


if __name__ == "__main__":
    main()

"""The DDIM table of chapter 07 (not a test): Frechet distance and seconds per sample of DDPM (T = 1000 ancestral steps)
and DDIM with S steps and noise eta, from one MNIST DDPM trained for the book.

usage: python benchmarks/bench_ddim_table.py [--run-dir runs/ddim-book] [--train-steps 3000] [--n 1000]
                                             [--S 10,20,50,100] [--etas 0,0.5,1] [--extra 1000:0,1000:1]
                                             [--threads 1] [--boot 50]
                                             [--timing-batch 50] [--timing-rounds 3]
                                             [--out benchmarks/results/ddim_table.json] [--smoke]

* the model: `mnist_config` (chapter 15's default MNIST DDPM, 0.29 M parameters) trained for --train-steps steps in
  --run-dir; the script trains it (or resumes it) when the checkpoint there has fewer steps, so this one command
  reproduces the table from nothing (`ldm-nb demo --run-dir runs/ddim-book --steps 3000` trains the same model);
* samples: n digits per sampler from the EMA weights, in chunks of --batch with seed = chunk index, so every sampler
  starts from the same x_T (common random numbers: the differences between rows are the samplers', not the noise's);
  DDPM clips its x0 prediction to [-1, 1] (the CompVis default, `clip_denoised=True`), DDIM does not (the DDIM paper's
  code does not). The samples are kept in RUN_DIR/table_samples/ (float16), and a rerun with the same model, n and
  batch reuses them instead of sampling again;
* FD: chapter 14's classifier features of the n samples against n random real test digits, next to the floor (the same
  distance between two disjoint sets of n real digits: what a perfect sampler would score at this n), with the
  bootstrap standard deviation over the samples (--boot resamples; the reference set held fixed);
* seconds per sample: a separate timing pass after all the samples, --timing-rounds rounds that each time one batch of
  --timing-batch samples of every sampler in turn, the median per sampler (interleaving spreads the machine's load
  changes over all rows; this machine is shared, so compare rows of one run, not runs).
Writes JSON, a markdown table (.md) and a figure (.png) with the same stem; the JSON's "meta" says how it was made (git
commit, command line, versions, threads, date).
--smoke: a tiny run (a 2-step model in a temp run folder, n = 4, S in 2,5, eta in 0,1, DDPM-1000 on 4 samples, one
timing round) that only checks the script end to end; everything goes to a temp folder, not --out or --run-dir."""
import argparse, json, os, platform, statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir, load_or_draw, fd_with_sd, interleaved_timing, mnist_table_setup

# Table 1 of Song, Meng & Ermon (2021), CIFAR-10 FID, for the comparison of shapes (not of values)
PAPER = {"S": [10, 20, 50, 100], "eta": {0.0: [13.36, 6.84, 4.67, 4.16], 1.0: [41.07, 18.36, 8.01, 5.78]}}


def ensure_model(run_dir: str, steps: int, device: str, **overrides) -> Path:
    "Train (or resume) the book's MNIST DDPM in `run_dir` up to `steps` steps; return its checkpoint path."
    from ldm_nb.train_ddpm import mnist_config, train, load_checkpoint
    from ldm_nb.runs import run_paths
    cfg = mnist_config(run_dir, steps=steps, sample_every=0, device=device, **overrides)
    ck = run_paths(run_dir)["ckpt"]
    done = load_checkpoint(ck, cfg)["step"] if ck.exists() else 0
    if done > steps: raise SystemExit(f"{ck} has {done} steps, more than --train-steps {steps}: use another --run-dir")
    if done < steps:
        print(f"training the book model: step {done} -> {steps} in {run_dir}", flush=True)
        train(cfg, resume=done > 0, progress=False)
    return ck


def tag(sampler: str, S: int, eta) -> str: return f"{sampler}_S{S}" + (f"_eta{eta:g}" if eta is not None else "")


def draw(ck: Path, sampler: str, n: int, batch: int, S: int, eta, seed0: int = 0) -> torch.Tensor:
    "n samples (chunk i has seed seed0 + i), `(n, 1, 28, 28)` in [-1, 1]."
    from ldm_nb.train_ddpm import sample_checkpoint
    return torch.cat([sample_checkpoint(ck, n=min(batch, n - lo), sampler=sampler, sample_steps=S if sampler != "ddpm" else 50,
                                        eta=eta or 0., seed=seed0 + i, device="cpu")[0]
                      for i, lo in enumerate(range(0, n, batch))])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/ddim_table.json")
    ap.add_argument("--run-dir", default="runs/ddim-book")
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=1000, help="samples per sampler (and real digits in the reference), <= 5000")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--S", default="10,20,50,100")
    ap.add_argument("--etas", default="0,0.5,1")
    ap.add_argument("--extra", default="1000:0,1000:1", help="more DDIM rows as S:eta pairs (default: S = T for eta 0 and 1)")
    ap.add_argument("--skip-ddpm", action="store_true", help="leave out the (long) DDPM-1000 row")
    ap.add_argument("--boot", type=int, default=50, help="bootstrap resamples for the FD's standard deviation")
    ap.add_argument("--timing-batch", type=int, default=50)
    ap.add_argument("--timing-rounds", type=int, default=3, help="0: no timing pass")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script, all in a temp folder (not --out/--run-dir)")
    args = ap.parse_args(argv)
    if args.smoke:
        tmp = smoke_dir("ddim_table")
        args.run_dir, args.out = str(tmp / "run"), str(tmp / Path(args.out).name)
        args.train_steps, args.n, args.batch, args.S, args.etas, args.extra = 2, 4, 4, "2,5", "0,1", "10:0"
        args.boot, args.timing_batch, args.timing_rounds = 3, 1, 1
    if not 2 <= args.n <= 5000: ap.error("--n must be in [2, 5000]")
    for name in ("batch", "threads", "timing_batch", "boot", "train_steps"):
        if getattr(args, name) < 1: ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.timing_rounds < 0: ap.error("--timing-rounds must be >= 0")
    try:
        Ss, etas = [int(s) for s in args.S.split(",")], [float(e) for e in args.etas.split(",")]
        extra = [(int(a), float(b)) for a, b in (p.split(":") for p in args.extra.split(",") if p)]
    except ValueError: ap.error("--S must be a comma list of integers, --etas of numbers, --extra of S:eta pairs")
    if any(not 1 <= S <= 1000 for S in Ss + [a for a, _ in extra]) or any(e < 0 for e in etas + [b for _, b in extra]):
        ap.error("every S must be in [1, 1000] and every eta >= 0")
    torch.set_num_threads(args.threads)
    from ldm_nb.core import save_png
    from ldm_nb.metrics import classifier_features

    ck, info, store, clf, ref, res = mnist_table_setup(args, ensure_model, "table_samples", paper_table1_cifar10=PAPER)
    out = Path(args.out)

    todo = [("ddim", S, e) for e in etas for S in Ss] + [("ddim", S, e) for S, e in extra if (S, e) not in
            [(a, b) for a in Ss for b in etas]] + ([] if args.skip_ddpm else [("ddpm", 1000, None)])
    gb = torch.Generator().manual_seed(0)
    for sampler, S, eta in todo:
        x, reused, secs = load_or_draw(store / f"{tag(sampler, S, eta)}.pt", lambda: draw(ck, sampler, args.n, args.batch, S, eta))
        fd, sd = fd_with_sd(classifier_features(x, clf), ref, args.boot, gb)
        r = dict(sampler=sampler, S=S, eta=eta, fd=fd, fd_boot_sd=sd, model_calls_per_sample=S,
                 sampling_seconds=None if reused else round(secs, 1))
        res["rows"].append(r)
        print(json.dumps(r), flush=True)
        save_png(x[:16], out.with_name(f"{out.stem}_{tag(sampler, S, eta)}.png"), nrow=16)

    # the timing pass: rounds x samplers, interleaved; median seconds per sample of each sampler
    times = interleaved_timing([lambda b, rnd, a=a: draw(ck, a[0], b, b, a[1], a[2], seed0=10_000 + rnd) for a in todo],
                               args.timing_rounds, args.timing_batch)
    for i, r in enumerate(res["rows"]):
        r["s_per_sample"] = statistics.median(times[i]) if times[i] else None
        r["s_per_sample_all"] = times[i]
    res["timing"] = dict(batch=args.timing_batch, rounds=args.timing_rounds)
    res["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    figure(res, out.with_suffix(".png"))
    print(markdown(res))


def markdown(res: dict) -> str:
    rows = {(r["sampler"], r["S"], r["eta"]): r for r in res["rows"]}
    Ss = sorted({r["S"] for r in res["rows"] if r["sampler"] == "ddim"})
    cols = Ss + ([1000] if any(r["sampler"] == "ddpm" for r in res["rows"]) and 1000 not in Ss else [])
    etas = sorted({r["eta"] for r in res["rows"] if r["sampler"] == "ddim"})
    def cell(r):
        if r is None: return "-"
        sd = f" ± {r['fd_boot_sd']:.2f}" if r.get("fd_boot_sd") is not None else ""
        t = f" / {r['s_per_sample']:.3f} s" if r.get("s_per_sample") is not None else ""
        return f"{r['fd']:.2f}{sd}{t}"
    tm = res.get("timing", {})
    lines = [f"MNIST DDPM (`mnist_config`, {res['model_step']} steps, EMA weights), n = {res['n']} samples per sampler "
             f"against {res['n']} real test digits; FD floor (real vs real at n = {res['n']}) **{res['fd_floor']:.2f}**. "
             f"Each entry: FD ± its bootstrap SD over the samples ({res['boot']} resamples) / seconds per sample (median "
             f"of {tm.get('rounds')} interleaved timings of a batch of {tm.get('batch')}, {res['threads']} thread(s), "
             f"{res['device']}, torch {res['torch']}).",
             "", "| sampler | " + " | ".join(f"S = {S}" for S in cols) + " |", "|---|" + "---|" * len(cols)]
    for e in etas:
        lines.append(f"| DDIM η = {e:g} | " + " | ".join(cell(rows.get(("ddim", S, e))) for S in cols) + " |")
    if ("ddpm", 1000, None) in rows:
        lines.append("| DDPM (ancestral) | " + " | ".join(cell(rows[("ddpm", 1000, None)]) if S == 1000 else "-" for S in cols) + " |")
    p = res["paper_table1_cifar10"]
    lines += ["", "DDIM paper, Table 1 (CIFAR-10 FID with Inception features; the shape to compare, not the values):", "",
              "| η | " + " | ".join(f"S = {S}" for S in p["S"]) + " |", "|---|" + "---|" * len(p["S"])]
    for e, v in p["eta"].items(): lines.append(f"| {float(e):g} | " + " | ".join(f"{x:.2f}" for x in v) + " |")
    lines += ["", f"Load average before/after: {[round(v, 2) for v in res['loadavg_before']]} / "
              f"{[round(v, 2) for v in res.get('loadavg_after') or []]}.", ""]
    return "\n".join(lines)


def figure(res: dict, path: Path) -> None:
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    Ss = sorted({r["S"] for r in res["rows"] if r["sampler"] == "ddim"})
    for e in sorted({r["eta"] for r in res["rows"] if r["sampler"] == "ddim"}):
        rr = sorted((r for r in res["rows"] if r["sampler"] == "ddim" and r["eta"] == e), key=lambda r: r["S"])
        ax.errorbar([r["S"] for r in rr], [r["fd"] for r in rr], yerr=[r["fd_boot_sd"] or 0 for r in rr], fmt="o-",
                    capsize=2, label=f"DDIM η = {e:g}")
    for r in res["rows"]:
        if r["sampler"] == "ddpm": ax.axhline(r["fd"], color="k", ls="--", lw=1, label="DDPM, 1000 steps")
    ax.axhline(res["fd_floor"], color="gray", ls=":", lw=1, label=f"floor (n = {res['n']})")
    ax.set_xscale("log"); ax.set_xlabel("sampling steps S"); ax.set_ylabel("FD (classifier features)")
    ax.set_xticks(Ss); ax.set_xticklabels([str(S) for S in Ss]); ax.minorticks_off(); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)


if __name__ == "__main__":
    main()

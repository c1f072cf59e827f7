"""FD against network calls (NFE) for the few-step solvers of chapter 07b (not a test): DDIM (eta = 0), DPM-Solver++(2M),
Euler and Heun (Karras levels) on the book's MNIST DDPM, the model of chapter 07's DDIM table, or (--model ldm) on
chapter 17's class-conditional LDM with classifier-free guidance.

usage: python benchmarks/bench_solvers.py [--model ddpm|ldm] [--run-dir runs/ddim-book] [--train-steps 3000] [--n 1000]
                                          [--nfe 5,10,20,50,100] [--samplers ddim,dpmpp-2m,euler,heun]
                                          [--guidance-scale 3] [--threads 1] [--boot 50] [--timing-batch 50] [--timing-rounds 3]
                                          [--out benchmarks/results/solvers_mnist.json] [--smoke]

* the model, the samples and the FD are bench_ddim_table.py's (its `ensure_model` and `draw`, and the shared parts in
  _common.py): `mnist_config` trained for --train-steps steps in --run-dir (trained or resumed when the checkpoint has
  fewer), n samples per row from the EMA weights in chunks of --batch with seed = chunk index, so every row starts
  from the same x_T; FD of chapter 14's classifier features against n random real test digits, the bootstrap SD
  over the samples, the floor (real against real at this n);
* --model ldm: the demo's LDM (`make demo`: chapter 17d's `demo_ldm`, trained there when --run-dir (default
  runs/mnist-ldm) has no checkpoint), n / 10 samples of each class (row k of a chunk: its labels in class order), the
  guidance scale of the demo (s = 3; every network call is one batched conditional + unconditional pass), the
  class accuracy beside the FD; results in solvers_mnist_ldm.json unless --out says otherwise;
* each sampler is used as `ldm-nb sample --sampler NAME --sample-steps N` uses it, with its default spacing (DDIM:
  chapter 07's uniform steps; DPM-Solver++(2M): uniform in lambda; Euler and Heun: Karras, rho = 7); a row's budget B
  of network calls gives N = B steps, except Heun: N = (B + 1) // 2 steps, 2N - 1 <= B calls (the row says its NFE);
* the question of the DPM-Solver paper: is DPM-Solver++(2M) at 10 NFE no worse than DDIM at 50? The difference of the
  two FDs with its paired bootstrap SD (both rows resampled at the same indices, as they share x_T); "no worse" when
  the difference is below 2 SD;
* seconds per sample: an interleaved timing pass after all samples (--timing-rounds rounds of a batch of
  --timing-batch per row), the median per row.
Writes JSON, a markdown table (.md), a figure of FD against NFE (.png) and a grid of 16 samples of each sampler at
the 10-call budget (STEM_nfe10.png). --smoke: a 2-step model in a temp folder, n = 4, budgets 5,10,50: seconds."""
import argparse, json, os, platform, statistics, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir, load_or_draw, fd_with_sd, interleaved_timing, mnist_table_setup, paired_diff
from bench_ddim_table import ensure_model, draw

LDM_DEFAULTS = dict(run_dir="runs/mnist-ldm", out="benchmarks/results/solvers_mnist_ldm.json")
SPACING = {"ddim": "uniform in t", "dpmpp-2m": "uniform in λ", "euler": "Karras, ρ = 7", "heun": "Karras, ρ = 7"}
NAMES = {"ddim": "DDIM η = 0", "dpmpp-2m": "DPM-Solver++(2M)", "euler": "Euler", "heun": "Heun"}


def steps_for(sampler: str, budget: int) -> int: return (budget + 1) // 2 if sampler == "heun" else budget


def nfe_of(sampler: str, steps: int) -> int: return 2 * steps - 1 if sampler == "heun" else steps


def ensure_ldm(run_dir: str, steps: int, device: str, **overrides) -> Path:
    "The demo's LDM in `run_dir` (chapter 17d's `demo_ldm` trains it, or resumes it, up to `steps` steps): its checkpoint."
    from ldm_nb.runs import run_paths
    from ldm_nb.train_ldm import LDM_CHECKPOINT
    ck = run_paths(run_dir)["ckpt"]
    done = LDM_CHECKPOINT.load(ck)["step"] if ck.exists() else 0
    if done > steps: raise SystemExit(f"{ck} has {done} steps, more than --train-steps {steps}: use another --run-dir")
    if done < steps:
        from ldm_nb.demos import demo_ldm
        smoke = dict(vae_steps=2, n_per_class=10, sample_steps=3) if "n_sample" in overrides else {}  # mnist_table_setup's smoke
        print(f"training the demo's LDM: step {done} -> {steps} in {run_dir}", flush=True)
        demo_ldm(run_dir, ldm_steps=steps, device=device, progress=False, **smoke)
    return ck


def labels_of(m: int) -> torch.Tensor:
    "(m,) labels, class k in the k-th tenth: the order the LDM rows are drawn in."
    return torch.arange(10).repeat_interleave(-(-m // 10))[:m]


def ldm_drawer(ck: Path, scale: float):
    "draw(sampler, n, batch, S, seed0): n samples of the LDM at `ck`, chunk i from seed seed0 + i, labels in class order."
    from ldm_nb.train_ldm import load_ldm
    ldm = load_ldm(ck, "cpu")[0]
    def draw(sampler, m, batch, S, seed0=0):
        labels = labels_of(m)
        return torch.cat([ldm.sample_images(labels[lo:lo + batch], sampler, S, guidance_scale=scale,
                                            generator=torch.Generator().manual_seed(seed0 + i))
                          for i, lo in enumerate(range(0, m, batch))])
    return draw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("ddpm", "ldm"), default="ddpm",
                    help="the book's MNIST DDPM (chapter 07) or the demo's class-conditional LDM (chapter 17d)")
    ap.add_argument("--out", default=None, help="default benchmarks/results/solvers_mnist.json (ldm: solvers_mnist_ldm.json)")
    ap.add_argument("--run-dir", default=None, help="default runs/ddim-book (ldm: runs/mnist-ldm)")
    ap.add_argument("--train-steps", type=int, default=None, help="default 3000 (ldm: the demo's DEMO_LDM_STEPS)")
    ap.add_argument("--guidance-scale", type=float, default=3., help="ldm only: the CFG scale s (the demo's)")
    ap.add_argument("--n", type=int, default=1000, help="samples per row (and real digits in the reference), <= 5000")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--nfe", default="5,10,20,50,100", help="budgets of network calls per sample")
    ap.add_argument("--samplers", default="ddim,dpmpp-2m,euler,heun")
    ap.add_argument("--boot", type=int, default=50)
    ap.add_argument("--timing-batch", type=int, default=50)
    ap.add_argument("--timing-rounds", type=int, default=3, help="0: no timing pass")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script, all in a temp folder")
    args = ap.parse_args(argv)
    ldm = args.model == "ldm"
    if args.train_steps is None:
        from ldm_nb.demos import DEMO_LDM_STEPS
        args.train_steps = DEMO_LDM_STEPS if ldm else 3000
    args.run_dir = args.run_dir or (LDM_DEFAULTS["run_dir"] if ldm else "runs/ddim-book")
    args.out = args.out or (LDM_DEFAULTS["out"] if ldm else "benchmarks/results/solvers_mnist.json")
    if args.smoke:
        tmp = smoke_dir("solvers")
        args.run_dir, args.out = str(tmp / "run"), str(tmp / Path(args.out).name)
        args.train_steps, args.n, args.batch, args.nfe = 2, 10 if ldm else 4, 10 if ldm else 4, "5,10,50"
        args.boot, args.timing_batch, args.timing_rounds = 3, 1, 1
    if not 2 <= args.n <= 5000: ap.error("--n must be in [2, 5000]")
    for name in ("batch", "threads", "timing_batch", "boot", "train_steps"):
        if getattr(args, name) < 1: ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.timing_rounds < 0: ap.error("--timing-rounds must be >= 0")
    try: budgets = [int(b) for b in args.nfe.split(",")]
    except ValueError: ap.error("--nfe must be a comma list of integers")
    samplers = args.samplers.split(",")
    from ldm_nb.solvers import SAMPLERS
    if any(s not in SAMPLERS[1:] for s in samplers): ap.error(f"--samplers must be among {', '.join(SAMPLERS[1:])}")
    if any(not 3 <= b <= 1000 for b in budgets): ap.error("every --nfe budget must be in [3, 1000]")
    torch.set_num_threads(args.threads)
    from ldm_nb.core import save_png
    from ldm_nb.metrics import classifier_features

    if ldm:
        from ldm_nb.train_ldm import LDM_CHECKPOINT
        from ldm_nb.metrics import classifier_accuracy
        ck, info, store, clf, ref, res = mnist_table_setup(args, ensure_ldm, "solver_samples", LDM_CHECKPOINT.load,
                                                           "mnist_ldm_config (the demo)", spacing=SPACING,
                                                           model="ldm", guidance_scale=args.guidance_scale)
        draw_row = ldm_drawer(ck, args.guidance_scale)
    else:
        ck, info, store, clf, ref, res = mnist_table_setup(args, ensure_model, "solver_samples", spacing=SPACING, model="ddpm")
        draw_row = lambda s, m, batch, N, seed0=0: draw(ck, s, m, batch, N, 0., seed0=seed0)
    out = Path(args.out)
    todo = [(s, b) for s in samplers for b in budgets]
    gb, feats, grid = torch.Generator().manual_seed(0), {}, {}
    for sampler, b in todo:
        N = steps_for(sampler, b)
        x, reused, secs = load_or_draw(store / f"{sampler}_S{N}.pt", lambda: draw_row(sampler, args.n, args.batch, N))
        feats[sampler, b] = classifier_features(x, clf)
        fd, sd = fd_with_sd(feats[sampler, b], ref, args.boot, gb)
        r = dict(sampler=sampler, nfe_budget=b, steps=N, nfe=nfe_of(sampler, N), spacing=SPACING[sampler], fd=fd,
                 fd_boot_sd=sd, sampling_seconds=None if reused else round(secs, 1))
        if ldm: r["class_accuracy"] = classifier_accuracy(clf, x, labels_of(len(x)))
        res["rows"].append(r)
        print(json.dumps(r), flush=True)
        if b == 10: grid[sampler] = x[:16]
    times = interleaved_timing([lambda n, rnd, s=s, b=b: draw_row(s, n, n, steps_for(s, b), seed0=10_000 + rnd)
                                for s, b in todo], args.timing_rounds, args.timing_batch)
    for r, t in zip(res["rows"], times):
        r["s_per_sample"] = statistics.median(t) if t else None
        r["s_per_sample_all"] = t
    res["timing"] = dict(batch=args.timing_batch, rounds=args.timing_rounds)
    if ("dpmpp-2m", 10) in feats and ("ddim", 50) in feats:
        vs = []                                  # every DPM-Solver++ row against DDIM-50, one bootstrap each
        for b in budgets:
            d, sd = paired_diff(feats["dpmpp-2m", b], feats["ddim", 50], ref, args.boot, gb)
            vs.append(dict(nfe_budget=b, fd_difference=d, difference_boot_sd=sd, no_worse=bool(sd is not None and d < 2 * sd),
                           better=bool(sd is not None and d < -2 * sd)))
        at10 = next(v for v in vs if v["nfe_budget"] == 10)     # the goal's question is the 10-call entry
        res["goal"] = dict(question="DPM-Solver++(2M) at 10 NFE no worse than DDIM (eta = 0) at 50 NFE?",
                           **{k: v for k, v in at10.items() if k != "nfe_budget"})
        res["goal"]["dpmpp_vs_ddim50"] = vs
        res["goal"]["smallest_no_worse_budget"] = next((v["nfe_budget"] for v in vs if v["no_worse"]), None)
    res["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    figure(res, out.with_suffix(".png"))
    if grid: save_png(torch.cat(list(grid.values())), out.with_name(f"{out.stem}_nfe10.png"), nrow=16)
    print(markdown(res))


def verdict(g: dict) -> str:
    "The goal's answer in one sentence."
    d, sd = g["fd_difference"], g["difference_boot_sd"]
    word = ("yes, and better" if g["better"] else "yes: no worse within the noise") if g["no_worse"] else "no: worse"
    out = (f"**{g['question']}** {word[0].upper() + word[1:]} (FD difference {d:+.2f}, paired bootstrap SD "
           f"{sd:.2f}; 'no worse' means below 2 SD).")
    if "smallest_no_worse_budget" in g:
        b = g["smallest_no_worse_budget"]
        v = {r["nfe_budget"]: r for r in g["dpmpp_vs_ddim50"]}.get(b)
        out += (f" The smallest budget at which it is no worse: {b} NFE (difference {v['fd_difference']:+.2f}, "
                f"SD {v['difference_boot_sd']:.2f})." if v else " It is worse at every budget.")
    return out


def markdown(res: dict) -> str:
    rows = {(r["sampler"], r["nfe_budget"]): r for r in res["rows"]}
    budgets = sorted({r["nfe_budget"] for r in res["rows"]})
    samplers = list(dict.fromkeys(r["sampler"] for r in res["rows"]))
    def cell(r):
        if r is None: return "-"
        sd = f" ± {r['fd_boot_sd']:.2f}" if r.get("fd_boot_sd") is not None else ""
        t = f" / {r['s_per_sample']:.3f} s" if r.get("s_per_sample") is not None else ""
        calls = f" ({r['nfe']} calls)" if r["nfe"] != r["nfe_budget"] else ""
        acc = f", {r['class_accuracy']:.1%}" if r.get("class_accuracy") is not None else ""
        return f"{r['fd']:.2f}{sd}{acc}{t}{calls}"
    tm = res.get("timing", {})
    if res.get("model") == "ldm":
        what = (f"The demo's class-conditional MNIST LDM (chapter 17d, {res['model_step']} steps, EMA weights), "
                f"classifier-free guidance s = {res['guidance_scale']:g}, n = {res['n']} samples per row ({res['n'] // 10} "
                f"per class)")
        acc = ", class accuracy"
    else: what, acc = f"MNIST DDPM (`mnist_config`, {res['model_step']} steps, EMA weights), n = {res['n']} samples per row", ""
    lines = [f"{what} against {res['n']} real test digits, every row from the same x_T; FD floor (real vs real at n = "
             f"{res['n']}) **{res['fd_floor']:.2f}**. Each entry: FD ± its bootstrap SD ({res['boot']} resamples){acc} / "
             f"seconds per sample (median of {tm.get('rounds')} interleaved timings of a batch of {tm.get('batch')}, "
             f"{res['threads']} thread(s), {res['device']}, torch {res['torch']}).",
             "", "| sampler (spacing) | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for s in samplers:
        lines.append(f"| {NAMES.get(s, s)} ({res['spacing'][s]}) | "
                     + " | ".join(cell(rows.get((s, b))) for b in budgets) + " |")
    if "goal" in res: lines += ["", verdict(res["goal"])]
    lines += ["", f"Load average before/after: {[round(v, 2) for v in res['loadavg_before']]} / "
              f"{[round(v, 2) for v in res.get('loadavg_after') or []]}.", ""]
    return "\n".join(lines)


def figure(res: dict, path: Path) -> None:
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    for s, m in zip(dict.fromkeys(r["sampler"] for r in res["rows"]), "osvD"):
        rr = sorted((r for r in res["rows"] if r["sampler"] == s), key=lambda r: r["nfe"])
        ax.errorbar([r["nfe"] for r in rr], [r["fd"] for r in rr], yerr=[r["fd_boot_sd"] or 0 for r in rr],
                    fmt=m + "-", ms=4, capsize=2, label=NAMES.get(s, s))
    ax.axhline(res["fd_floor"], color="gray", ls=":", lw=1, label=f"floor (n = {res['n']})")
    budgets = sorted({r["nfe_budget"] for r in res["rows"]})
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("network calls per sample (NFE)")
    ax.set_ylabel("FD (classifier features)"); ax.set_xticks(budgets); ax.set_xticklabels([str(b) for b in budgets])
    ax.minorticks_off(); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)


if __name__ == "__main__":
    main()

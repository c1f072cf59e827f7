"""The latent-diffusion claim at matched quality on MNIST (issue 12; not a test): how much training compute does each
space need to reach the same sample quality?

usage: python benchmarks/bench_matched.py [--root runs/matched] [--pixel-steps 250,500,1000,2000,3000]
                                          [--ldm-steps 250,500,1000,2000,3000] [--vae-steps 600] [--n 1000]
                                          [--sample-steps 50] [--threads 1] [--boot 50] [--draws 2000]
                                          [--out benchmarks/results/matched_mnist.json] [--replot] [--smoke]

* the two models, both unconditional (no guidance, so no guidance scale to match): the book's pixel-space DDPM
  (chapter 15d's `mnist_config`: 28x28 pixels) and chapter 17's LDM architecture (`mnist_ldm_config` with
  conditioning_key=None) on the demo's f = 4 autoencoder (chapter 16's `mnist_vae_config`, --vae-steps steps, the GAN
  off, as `make demo` trains it); each model is one run, whose checkpoints at the budgets of --pixel-steps /
  --ldm-steps are kept (a `save` that also copies the checkpoint at those steps);
* training compute: the process's CPU seconds (`time.process_time`) from the start of the run to each kept checkpoint,
  at --threads threads (1 by default: no OpenMP waiting, so CPU seconds are the work done, whatever else the machine
  runs); for the LDM it includes its start (scale factor, caching the training set's latents), and the autoencoder's
  own training is counted separately ("LDM + its autoencoder");
* quality: FD of chapter 14's classifier features of n samples (DDIM eta = 0, --sample-steps steps, EMA weights,
  chunk i of 250 from seed i: the same x_T at every budget of a model) against n real test digits, with its bootstrap
  SD and the floor (real against real at this n);
* matched quality: for FD targets both curves reach, the CPU seconds each needs, read off by linear interpolation of
  log(seconds) in FD between the two kept checkpoints around the first crossing; the ratio pixel / latent with its
  uncertainty from --draws parametric draws (each checkpoint's FD drawn from a normal with its bootstrap SD,
  independently, the crossing read again; the 16th-84th percentiles, and how often a draw never reaches the target);
* sampling time per sample of each model at --sample-steps steps (a batch of 50, median of 3 interleaved rounds).
Writes JSON, a markdown table (.md) and the figure of FD against training CPU seconds (.png). The kept checkpoints
and state.json (CPU seconds per budget) live in --root: a second run reuses what is there. --replot: redraw the
figure and table from the JSON. --smoke: 2- and 4-step models in a temp folder, n = 20: a minute."""
import argparse, dataclasses, json, math, os, shutil, statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir, real_reference, fd_with_sd, interleaved_timing

NAMES = {"pixel": "pixel-space DDPM (28x28)", "ldm": "latent diffusion (f = 4)"}


def keeping(base, budgets, keep: Path, state: dict):
    "A subclass of the trainer `base` whose `save` also keeps a copy at each budget and records the CPU seconds so far."
    class Keep(base):
        def save(self, path, step, seconds):
            super().save(path, step, seconds)
            if step in budgets:
                shutil.copyfile(path, keep / f"step_{step:06d}.safetensors")
                state[str(step)] = dict(cpu_seconds=round(time.process_time() - self.cpu0, 2), wall_seconds=round(seconds, 2))
    return Keep


def load_state(root: Path, name: str) -> dict:
    "What ROOT/state_NAME.json (or an older run's shared ROOT/state.json) records of model or step `name`."
    p, legacy = root / f"state_{name}.json", root / "state.json"
    if p.exists(): return json.loads(p.read_text())
    return json.loads(legacy.read_text()).get(name, {}) if legacy.exists() else {}


def save_state(root: Path, name: str, st: dict) -> None:
    "One file per model, so that runs for different --models can go side by side."
    (root / f"state_{name}.json").write_text(json.dumps(st, indent=2))


def train_kept(name: str, make, budgets, root: Path, st: dict) -> dict:
    "Train model `name` (one run up to max(budgets), a checkpoint kept at each budget) unless `st` already has them all."
    keep = root / name / "kept"
    if all(str(b) in st and (keep / f"step_{b:06d}.safetensors").exists() for b in budgets): return st
    st.clear(); keep.mkdir(parents=True, exist_ok=True)
    for f in keep.glob("*.safetensors"): f.unlink()
    trainer_cls, cfg = make(root, max(budgets), math.gcd(*budgets))
    from ldm_nb.runs import run_training
    trainer = keeping(trainer_cls, set(budgets), keep, st)(cfg)
    trainer.cpu0 = time.process_time()
    print(f"training {name}: {max(budgets)} steps, kept at {budgets}", flush=True)
    run_training(trainer, overwrite=True, progress=False)
    return st


def make_pixel(root: Path, steps: int, every: int, smoke: bool = False):
    from ldm_nb.train_ddpm import mnist_config, DDPMTrainer
    cfg = mnist_config(str(root / "pixel" / "run"), steps=steps, ckpt_every=every, log_every=every, sample_every=0,
                       device="cpu", **(dict(n_sample=1) if smoke else {}))
    return DDPMTrainer, cfg


def make_ldm(root: Path, steps: int, every: int, smoke: bool = False):
    from ldm_nb.train_ldm import mnist_ldm_config, LDMTrainer
    c = mnist_ldm_config(str(root / "vae" / "run"), str(root / "ldm" / "run"))
    ldm = dataclasses.replace(c.ldm, conditioning_key=None, num_classes=None, p_uncond=0.)
    cfg = dataclasses.replace(c, ldm=ldm, guidance_scale=1., steps=steps, ckpt_every=every, log_every=every,
                              sample_every=0, device="cpu", **(dict(cache_latents=False, scale_images=64, n_sample=1) if smoke else {}))
    return LDMTrainer, cfg


def train_vae_timed(root: Path, steps: int) -> dict:
    "The demo's autoencoder (chapter 16, the GAN off), trained once in ROOT/vae/run; its CPU seconds."
    from ldm_nb.train_vae import mnist_vae_config, train_vae, VAE_CHECKPOINT
    ck = root / "vae" / "run" / "checkpoints" / "last.safetensors"
    st = load_state(root, "vae")
    if st.get("steps") == steps and ck.exists() and VAE_CHECKPOINT.load(ck)["step"] == steps: return st
    cfg = mnist_vae_config(str(root / "vae" / "run"), steps=steps, device="cpu", sample_every=0, disc_factor=0.)
    t0, w0 = time.process_time(), time.time()
    print(f"training the autoencoder: {steps} steps", flush=True)
    train_vae(cfg, overwrite=True, progress=False)
    st = dict(steps=steps, cpu_seconds=round(time.process_time() - t0, 2), wall_seconds=round(time.time() - w0, 2))
    save_state(root, "vae", st)
    return st


def sampler_of(name: str, ck: Path):
    "draw(n, batch, seed0): n unconditional samples (DDIM, S steps) of the kept checkpoint `ck`, chunk i from seed seed0 + i."
    if name == "pixel":
        from ldm_nb.train_ddpm import sample_checkpoint
        return lambda n, batch, S, seed0=0: torch.cat([
            sample_checkpoint(ck, n=min(batch, n - lo), sampler="ddim", sample_steps=S, seed=seed0 + i, device="cpu")[0]
            for i, lo in enumerate(range(0, n, batch))])
    from ldm_nb.train_ldm import load_ldm
    ldm = load_ldm(ck, "cpu")[0]
    return lambda n, batch, S, seed0=0: torch.cat([
        ldm.sample_images(min(batch, n - lo), "ddim", S, generator=torch.Generator().manual_seed(seed0 + i))
        for i, lo in enumerate(range(0, n, batch))])


def crossing(seconds: list, fds: list, target: float):
    """CPU seconds at which the curve (seconds increasing) first reaches FD <= target: log-linear between two budgets;
    None if it never does, or already does at the first budget (no bracket: the cost is not known)."""
    if fds[0] <= target: return None
    for (s0, f0), (s1, f1) in zip(zip(seconds, fds), zip(seconds[1:], fds[1:])):
        if f1 <= target < f0:
            w = (f0 - target) / (f0 - f1)
            return math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0)))
    return None


def matched(curves: dict, targets: list, draws: int, gen: torch.Generator) -> list:
    "Per FD target: the CPU seconds of each curve at the first crossing and the ratio pixel / ldm, with draw percentiles."
    out = []
    for tgt in targets:
        row = dict(fd_target=tgt)
        for k, c in curves.items(): row[f"{k}_cpu_seconds"] = crossing(c["seconds"], c["fd"], tgt)
        ratios, missed = [], 0
        for _ in range(draws):
            got = {}
            for k, c in curves.items():
                f = (torch.tensor(c["fd"]) + torch.tensor(c["sd"]) * torch.randn(len(c["fd"]), generator=gen)).tolist()
                got[k] = crossing(c["seconds"], f, tgt)
            if None in got.values(): missed += 1; continue
            ratios.append({k: got["pixel"] / v for k, v in got.items() if k != "pixel"})
        for k in curves:
            if k == "pixel": continue
            a, b = row["pixel_cpu_seconds"], row[f"{k}_cpu_seconds"]
            row[f"ratio_pixel_over_{k}"] = a / b if a and b else None
            rs = sorted(r[k] for r in ratios)
            row[f"ratio_pixel_over_{k}_p16_p84"] = [rs[int(0.16 * len(rs))], rs[int(0.84 * len(rs))]] if len(rs) > 10 else None
        row["draws_missing_target"] = missed / draws
        out.append(row)
    return out


def curves_of(res: dict) -> dict:
    "The FD curves the read-off uses: pixel, LDM alone, and LDM with its autoencoder's CPU seconds added."
    by = lambda m: sorted((r for r in res["rows"] if r["model"] == m), key=lambda r: r["steps"])
    c = {m: dict(seconds=[r["cpu_seconds"] for r in by(m)], fd=[r["fd"] for r in by(m)], sd=[r["fd_boot_sd"] or 0. for r in by(m)])
         for m in ("pixel", "ldm")}
    v = res["vae"]["cpu_seconds"]
    c["ldm_with_vae"] = dict(seconds=[s + v for s in c["ldm"]["seconds"]], fd=c["ldm"]["fd"], sd=c["ldm"]["sd"])
    return c


def auto_targets(c: dict) -> list:
    "Three FD levels both curves reach after their first budget: 25, 50 and 75 % of the overlap (in log FD)."
    lo = max(min(c["pixel"]["fd"]), min(c["ldm"]["fd"]))
    hi = min(c["pixel"]["fd"][0], c["ldm"]["fd"][0])
    if not lo < hi: return []
    return [round(math.exp(math.log(lo) + q * (math.log(hi) - math.log(lo))), 2) for q in (0.25, 0.5, 0.75)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/matched_mnist.json")
    ap.add_argument("--root", default="runs/matched")
    ap.add_argument("--pixel-steps", default="250,500,1000,2000,3000")
    ap.add_argument("--ldm-steps", default="250,500,1000,2000,3000")
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--boot", type=int, default=50)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--models", default="pixel,ldm", help="train and score only these (side-by-side runs); the read-off needs both")
    ap.add_argument("--targets", default=None, help="FD targets, comma list (default: 25/50/75 %% of the curves' overlap)")
    ap.add_argument("--replot", action="store_true", help="only redraw the table and figure from --out's JSON")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        res = json.loads(out.read_text())
        return write(res, out)
    if args.smoke:
        tmp = smoke_dir("matched")
        args.root, out = str(tmp / "root"), tmp / out.name
        args.pixel_steps = args.ldm_steps = "2,4"
        args.vae_steps, args.n, args.batch, args.sample_steps, args.boot, args.draws = 2, 20, 10, 3, 3, 50
    try:
        budgets = {m: sorted({int(b) for b in getattr(args, f"{m}_steps").split(",")}) for m in ("pixel", "ldm")}
        targets = None if args.targets is None else [float(t) for t in args.targets.split(",")]
    except ValueError: ap.error("--pixel-steps, --ldm-steps and --targets must be comma lists of numbers")
    if any(b < 1 for v in budgets.values() for b in v): ap.error("every budget must be >= 1")
    models = args.models.split(",")
    if not models or any(m not in NAMES for m in models) or len(set(models)) != len(models):
        ap.error(f"--models must be a comma list of {', '.join(NAMES)}")
    for name in ("vae_steps", "batch", "sample_steps", "threads", "boot", "draws"):
        if getattr(args, name) < 1: ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 2 <= args.n <= 5000: ap.error("--n must be in [2, 5000]")
    torch.set_num_threads(args.threads)
    from ldm_nb.metrics import get_mnist_classifier, classifier_features, fd_floor
    root = Path(args.root); root.mkdir(parents=True, exist_ok=True)
    res = dict(n=args.n, sample_steps=args.sample_steps, threads=torch.get_num_threads(), boot=args.boot, draws=args.draws,
               loadavg_before=list(os.getloadavg()) if hasattr(os, "getloadavg") else None, rows=[], meta=run_meta(args.smoke))
    res["vae"] = train_vae_timed(root, args.vae_steps)
    state = {}
    for name, make in (("pixel", make_pixel), ("ldm", make_ldm)):
        if name not in models: continue
        state[name] = load_state(root, name)
        train_kept(name, lambda r, s, e, make=make: make(r, s, e, args.smoke), budgets[name], root, state[name])
        save_state(root, name, state[name])
    clf = get_mnist_classifier()
    ref = real_reference(args.n, clf)
    res["fd_floor"] = fd_floor(args.n, clf)
    how = dict(n=args.n, batch=args.batch, sample_steps=args.sample_steps, boot=args.boot)
    for name in models:
        for b in budgets[name]:
            st = state[name][str(b)]
            if st.get("eval", {}).get("how") != how:        # scored once per checkpoint and way of scoring
                ck = root / name / "kept" / f"step_{b:06d}.safetensors"
                t0 = time.perf_counter()
                x = sampler_of(name, ck)(args.n, args.batch, args.sample_steps)
                gen = torch.Generator().manual_seed(b + (10**6 if name == "ldm" else 0))   # the bootstrap's draws
                fd, sd = fd_with_sd(classifier_features(x, clf), ref, args.boot, gen)
                st["eval"] = dict(how=how, fd=fd, fd_boot_sd=sd, eval_seconds=round(time.perf_counter() - t0, 1))
                save_state(root, name, state[name])
            r = dict(model=name, steps=b, cpu_seconds=st["cpu_seconds"], wall_seconds=st["wall_seconds"],
                     **{k: v for k, v in st["eval"].items() if k != "how"})
            res["rows"].append(r); print(json.dumps(r), flush=True)
    if set(models) != set(NAMES): return print(f"scored {models} only: run with both models for the read-off and the JSON")
    draws = {m: sampler_of(m, root / m / "kept" / f"step_{budgets[m][-1]:06d}.safetensors") for m in ("pixel", "ldm")}
    times = interleaved_timing([lambda n, rnd, d=d: d(n, n, args.sample_steps, seed0=10_000 + rnd) for d in draws.values()],
                               1 if args.smoke else 3, 2 if args.smoke else 50)
    res["s_per_sample"] = {m: statistics.median(t) for m, t in zip(draws, times)}
    from ldm_nb.train_ddpm import load_checkpoint
    from ldm_nb.train_ldm import load_ldm
    from ldm_nb.unet import UNetModel
    last = {m: root / m / "kept" / f"step_{budgets[m][-1]:06d}.safetensors" for m in ("pixel", "ldm")}
    count = lambda net: sum(p.numel() for p in net.parameters())
    res["parameters"] = dict(pixel=count(UNetModel(load_checkpoint(last["pixel"])["config"].unet)),
                             ldm=count(load_ldm(last["ldm"])[0].model))
    c = curves_of(res)
    res["targets"] = targets if targets is not None else auto_targets(c)
    res["matched"] = matched(c, res["targets"], args.draws, torch.Generator().manual_seed(1))
    res["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    write(res, out)


def write(res: dict, out: Path) -> None:
    out.with_suffix(".md").write_text(markdown(res))
    figure(res, out.with_suffix(".png"))
    print(markdown(res))


def fmt_ratio(row: dict, k: str) -> str:
    r, band = row.get(f"ratio_pixel_over_{k}"), row.get(f"ratio_pixel_over_{k}_p16_p84")
    if r is None: return "not reached"
    return f"{r:.2f}" + (f" ({band[0]:.2f}-{band[1]:.2f})" if band else "")


def markdown(res: dict) -> str:
    p = res.get("parameters", {})
    lines = [f"Both unconditional, DDIM eta = 0 with S = {res['sample_steps']}, n = {res['n']} samples against {res['n']} real "
             f"test digits, FD floor **{res['fd_floor']:.2f}**; training compute in CPU seconds at {res['threads']} thread(s). "
             f"Pixel model {p.get('pixel', 0) / 1e6:.2f} M parameters, LDM {p.get('ldm', 0) / 1e6:.2f} M; the autoencoder "
             f"({res['vae']['steps']} steps) cost {res['vae']['cpu_seconds']:.0f} CPU s.", "",
             "| model | steps | CPU s | FD ± SD |", "|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {NAMES[r['model']]} | {r['steps']} | {r['cpu_seconds']:.0f} | {r['fd']:.2f} ± {r['fd_boot_sd'] or 0:.2f} |")
    s = res["s_per_sample"]
    lines += ["", f"Sampling: {s['pixel']:.3f} s per sample (pixel), {s['ldm']:.3f} s (LDM, decoder included) at "
              f"S = {res['sample_steps']}: the LDM samples {s['pixel'] / s['ldm']:.2f}x as fast.", "",
              "| FD target | pixel CPU s | LDM CPU s | pixel / LDM (16-84 %) | LDM + autoencoder CPU s | pixel / (LDM + AE) | draws missing the target |",
              "|---|---|---|---|---|---|---|"]
    f = lambda v: "-" if v is None else f"{v:.0f}"
    for m in res["matched"]:
        lines.append(f"| {m['fd_target']:.2f} | {f(m['pixel_cpu_seconds'])} | {f(m['ldm_cpu_seconds'])} | {fmt_ratio(m, 'ldm')} | "
                     f"{f(m['ldm_with_vae_cpu_seconds'])} | {fmt_ratio(m, 'ldm_with_vae')} | {m['draws_missing_target']:.0%} |")
    if not res["matched"]: lines += ["", "The two curves do not overlap: no FD is reached by both."]
    lines += ["", f"Load average before/after: {[round(v, 2) for v in res['loadavg_before'] or []]} / "
              f"{[round(v, 2) for v in res.get('loadavg_after') or []]}.", ""]
    return "\n".join(lines)


def figure(res: dict, path: Path) -> None:
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = curves_of(res)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for k, lab, st in (("pixel", NAMES["pixel"], "o-"), ("ldm", NAMES["ldm"], "s-"), ("ldm_with_vae", "LDM + its autoencoder's training", "s--")):
        ax.errorbar(c[k]["seconds"], c[k]["fd"], yerr=c[k]["sd"], fmt=st, ms=4, capsize=2, label=lab,
                    color="C1" if k.startswith("ldm") else "C0", alpha=0.55 if k == "ldm_with_vae" else 1.)
    ax.axhline(res["fd_floor"], color="gray", ls=":", lw=1, label=f"floor (n = {res['n']})")
    for t in res["targets"]: ax.axhline(t, color="C2", lw=0.6, alpha=0.6)
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("training compute (CPU seconds, 1 thread)")
    ax.set_ylabel(f"FD (n = {res['n']})"); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)


if __name__ == "__main__":
    main()

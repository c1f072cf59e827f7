"""Benchmark the class-conditional MNIST LDM of chapter 17 on this machine (not a test).

usage: python benchmarks/bench_ldm.py [--run-dir runs/mnist-ldm] [--out benchmarks/results/ldm_cpu.json] [--threads 1]
                                      [--n-per-class 50] [--scales 0,1,2,3,5] [--reduced] [--smoke] [--replot]

Needs a trained run: `ldm-nb demo-ldm` (or `python -c "from ldm_nb.demos import demo_ldm; demo_ldm()"`) makes runs/mnist-ldm.

(a) guidance: class accuracy (chapter 14's MNIST classifier), FD against real test digits with its floor, and the
    within-class feature spread (diversity: mean squared distance of the classifier's features to their class mean,
    classes as the classifier predicts them, relative to the same for real test digits) of DDIM samples for each
    classifier-free guidance scale s; then classifier guidance with a noisy-latent classifier trained briefly here, on the unconditional
    (null-label) model. Written as JSON + a figure (fidelity / diversity trade-off).
(b) the cost of CFG: seconds per sample with s = 1 (one network call per step) and s = 3 (one call on the doubled batch).
(c) pixel-space DDPM (chapter 15's mnist_config, 28x28) against the LDM (4x8x8 latents): seconds per training step at the
    same batch, seconds per sampled image (DDIM S=50, decoder included), and peak memory. Memory is the peak resident set
    size (VmHWM from /proc/self/status, reset with /proc/self/clear_refs) above the RSS once the model and the inputs are
    built and before the first step, over a warm-up call and the timed ones, each measurement in a fresh process; it
    counts everything the process touches (activations, gradients, optimizer state, allocator slack), not just tensors.
The JSON's "meta" says how it was made (git commit, command line, versions, threads, date).
--smoke: a tiny run that only checks the script end to end: it trains a 2-step autoencoder and a 2-step LDM in a temp
folder and runs every part on a few samples with a few DDIM steps; everything goes there (not --out or --run-dir).
--replot: redraw the figure (--out with .png) from the JSON at --out, without sampling or training.
"""
import argparse, json, math, os, platform, statistics, subprocess, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir


def rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"): return int(line.split()[1])
    return -1


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
        return True
    except OSError: return False


# ---------------------------------------------------------------- (c) one measurement per fresh process
def worker(kind: str, run_dir: str, batch: int, reps: int, threads: int, sample_steps: int = 50) -> dict:
    torch.set_num_threads(threads)
    from ldm_nb.train_ddpm import build_ddpm, mnist_config
    from ldm_nb.train_ldm import load_ldm, LatentLoss
    from ldm_nb.ddim import DDIMSampler
    from ldm_nb.unet import count_params
    torch.manual_seed(0)
    if kind.endswith("pixel"):
        ddpm = build_ddpm(mnist_config())
        net, params = ddpm.model, count_params(ddpm.model)
    else:
        ldm, info = load_ldm(Path(run_dir) / "checkpoints" / "last.safetensors")
        params = count_params(ldm.model) + count_params(ldm.cond_stage_model)
    if kind.startswith("train"):
        if kind == "train-pixel":
            opt = torch.optim.AdamW(ddpm.model.parameters(), lr=1e-3)
            x = torch.rand(batch, 1, 28, 28) * 2 - 1
            def step():
                loss, _ = ddpm(x); opt.zero_grad(); loss.backward(); opt.step(); ddpm.model_ema.update(ddpm.model)
        else:
            ldm.train(); lossm = LatentLoss(ldm); opt = torch.optim.AdamW(ldm.trainable_parameters(), lr=1e-3)
            x, y = torch.rand(batch, 1, 32, 32) * 2 - 1, torch.randint(0, 10, (batch,))
            with torch.no_grad(): post = ldm.first_stage_model.encode(x)
            mu, sig = post.mean, post.std
            T = ldm.num_timesteps
            def step():
                if kind == "train-ldm-encode":
                    with torch.no_grad(): p = ldm.first_stage_model.encode(x); m, s = p.mean, p.std
                else: m, s = mu, sig
                z = ldm.scale_factor * (m + s * torch.randn_like(m))
                loss, _ = lossm(z, y, torch.randint(0, T, (batch,)), torch.randn_like(z))
                opt.zero_grad(); loss.backward(); opt.step(); ldm.model_ema.update(ldm.model)
    else:
        if kind == "sample-pixel":
            ddpm.eval()
            def step(): DDIMSampler(ddpm).sample((batch, 1, 28, 28), sample_steps=sample_steps, progress=False)
        else:
            labels = torch.arange(10).repeat_interleave(math.ceil(batch / 10))[:batch]
            def step(): ldm.sample_images(labels, sample_steps=sample_steps, guidance_scale=1.)
    before = rss_kb("VmRSS"); ok = reset_peak()                             # model and inputs built, nothing run yet
    step()                                                                    # warm-up (counted in the peak)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
    peak = rss_kb("VmHWM")
    sec = statistics.median(ts)
    return dict(kind=kind, batch=batch, params=params, seconds=sec, seconds_per_item=sec / batch, reps=reps,
                rss_before_mb=before / 1024, peak_extra_mb=(peak - before) / 1024 if ok else None)


def run_worker(args, kind: str, batch: int, reps: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    r = subprocess.run([sys.executable, __file__, "--worker", kind, "--run-dir", args.run_dir, "--batch", str(batch),
                        "--reps", str(reps), "--threads", str(args.threads), "--worker-sample-steps", str(args.worker_sample_steps)],
                       capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f"worker {kind} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- (a) guidance
def within_class_spread(images: torch.Tensor, clf) -> float:
    "Mean squared distance of the classifier features to their class mean, classes as the classifier predicts them."
    from ldm_nb.metrics import classifier_features
    feats, pred = classifier_features(images, clf), clf.head(classifier_features(images, clf)).argmax(1)
    return statistics.mean(((feats[pred == c] - feats[pred == c].mean(0)) ** 2).sum(1).mean().item()
                           for c in range(10) if (pred == c).sum() > 1)


def judge(x, labels, clf, real, real_spread):
    from ldm_nb.metrics import classifier_accuracy, fd_score
    return dict(class_accuracy=classifier_accuracy(clf, x, labels), fd=fd_score(x, real, clf),
                diversity=within_class_spread(x, clf) / real_spread)


def train_latent_classifier(ldm, steps: int, seed: int = 0, n_train: int = 20000, n_test: int = 2000):
    "A NoisyClassifier p(c | z_t, t) on the LDM's scaled latents of MNIST (posterior samples), trained `steps` AdamW steps."
    from ldm_nb.data import load_mnist
    from ldm_nb.guidance import NoisyClassifier, NoisyClassifierConfig, noisy_classifier_loss
    from ldm_nb.train_ldm import encode_moments
    x, y = load_mnist("train", pad_to=32, limit=n_train)                  # a subset: encoding all 60000 costs a minute
    xt, yt = load_mnist("test", pad_to=32)
    mu, sig = encode_moments(ldm.first_stage_model, x)
    mu_t, sig_t = encode_moments(ldm.first_stage_model, xt[:n_test])
    s = ldm.scale_factor
    torch.manual_seed(seed)
    clf = NoisyClassifier(NoisyClassifierConfig(in_channels=mu.shape[1], num_classes=10, channels=32))
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for _ in range(steps):
        idx = torch.randint(0, len(mu), (256,), generator=g)
        z = s * (mu[idx] + sig[idx] * torch.randn(mu[idx].shape, generator=g))
        loss = noisy_classifier_loss(clf, ldm.schedule, z, y[idx], generator=g)
        opt.zero_grad(); loss.backward(); opt.step()
    clf.eval().requires_grad_(False)
    acc = {}
    with torch.no_grad():
        z = s * mu_t
        for t in (0, 250, 500, 750):
            tt = torch.full((len(z),), t)
            from ldm_nb.forward import q_sample
            zt = q_sample(ldm.schedule, z, tt, generator=torch.Generator().manual_seed(1))
            acc[t] = (clf(zt, tt).argmax(1) == yt[:n_test]).double().mean().item()
    return clf, dict(steps=steps, seconds=round(time.time() - t0, 1), heldout_accuracy_at_t=acc)


@torch.no_grad()
def classifier_guided(ldm, clf, labels, scale, S, seed):
    from ldm_nb.ddim import DDIMSampler
    from ldm_nb.guidance import classifier_guided_model_fn
    B = len(labels)
    fn = classifier_guided_model_fn(ldm.apply_model, clf, labels, scale, ldm.schedule, ldm.cfg.parameterization)
    shape = (B, *ldm.first_stage_model.latent_shape(32, 32))
    with ldm.ema_scope():
        z = DDIMSampler(ldm, fn).sample(shape, sample_steps=S, generator=torch.Generator().manual_seed(seed), progress=False,
                                        **ldm.unconditional_conditioning(B))
        return ldm.decode_first_stage(z).clamp(-1, 1)


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/mnist-ldm")
    ap.add_argument("--out", default="benchmarks/results/ldm_cpu.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--scales", default="0,1,2,3,5")
    ap.add_argument("--cg-scales", default="1,3,10", help="classifier guidance scales ('' to skip)")
    ap.add_argument("--cg-steps", type=int, default=600, help="training steps of the noisy-latent classifier")
    ap.add_argument("--reduced", action="store_true", help="fewer samples and repeats (a busy machine)")
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script, all in a temp folder (not --out/--run-dir)")
    ap.add_argument("--worker"); ap.add_argument("--batch", type=int, default=128); ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker-sample-steps", type=int, default=50, help=argparse.SUPPRESS)   # (c)'s DDIM S (smoke: fewer)
    ap.add_argument("--replot", action="store_true", help="redraw the figure from --out's JSON (no sampling)")
    args = ap.parse_args(argv)
    if args.replot:
        out = Path(args.out); figure(json.loads(out.read_text()), out.with_suffix(".png")); return
    if args.worker:
        print(json.dumps(worker(args.worker, args.run_dir, args.batch, args.reps, args.threads, args.worker_sample_steps))); return
    torch.set_num_threads(args.threads)
    if args.reduced: args.n_per_class, args.cg_steps = min(args.n_per_class, 20), min(args.cg_steps, 300)
    # the sizes of (a)'s latent classifier data, (b) and (c); --smoke shrinks them, the defaults are the benchmark's
    sizes = dict(cg_train=20000, cg_test=2000, cost_batch=100, train_batch=128, sample_batch=100)
    meta = run_meta(args.smoke)
    if args.smoke:
        tmp = smoke_dir("ldm")
        args.run_dir, args.out = str(tmp / "ldm"), str(tmp / Path(args.out).name)
        args.n_per_class, args.ddim_steps, args.scales, args.cg_scales, args.cg_steps = 5, 3, "0,3", "3", 3
        args.worker_sample_steps = 3
        sizes = dict(cg_train=512, cg_test=200, cost_batch=10, train_batch=8, sample_batch=10)
        smoke_run(tmp, args.run_dir)
    ckpt = Path(args.run_dir) / "checkpoints" / "last.safetensors"
    if not ckpt.exists(): sys.exit(f"no checkpoint at {ckpt}: run `ldm-nb demo-ldm` first")
    from ldm_nb.train_ldm import load_ldm
    from ldm_nb.ldm import class_grid
    from ldm_nb.data import load_mnist
    from ldm_nb.metrics import get_mnist_classifier, fd_floor, classifier_features
    from ldm_nb.core import save_png
    ldm, info = load_ldm(ckpt)
    clf = get_mnist_classifier()
    n = args.n_per_class
    labels = torch.arange(10).repeat_interleave(n)
    xr, yr = load_mnist("test")
    perm = torch.randperm(10000, generator=torch.Generator().manual_seed(1))[:10 * n]
    real, real_y = xr[perm], yr[perm]
    real_spread = within_class_spread(real, clf)
    res = dict(device="cpu", torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               machine=platform.machine(), loadavg_before=list(os.getloadavg()), checkpoint=str(ckpt), ldm_step=info["step"],
               n_samples=10 * n, ddim_steps=args.ddim_steps, fd_floor=fd_floor(10 * n, clf), reduced=args.reduced, meta=meta)
    print(f"LDM step {info['step']}, {10 * n} samples per setting, FD floor {res['fd_floor']:.2f}", flush=True)

    # (a) classifier-free guidance sweep
    res["cfg"] = []
    for s in [float(v) for v in args.scales.split(",")]:
        t0 = time.time()
        x = class_grid(ldm, n, sample_steps=args.ddim_steps, guidance_scale=s, seed=1).cpu()
        r = dict(scale=s, **judge(x, labels, clf, real, real_spread), seconds=round(time.time() - t0, 1))
        res["cfg"].append(r); print("cfg", r, flush=True)
        save_png(torch.cat([x[labels == c][:8] for c in range(10)]), Path(args.out).with_name(f"ldm_cfg_s{s:g}.png"), nrow=8)
    # classifier guidance on the unconditional (null-label) model
    res["classifier_guidance"] = []
    if args.cg_scales:
        lclf, res["latent_classifier"] = train_latent_classifier(ldm, args.cg_steps, n_train=sizes["cg_train"], n_test=sizes["cg_test"])
        print("latent classifier", res["latent_classifier"], flush=True)
        for w in [float(v) for v in args.cg_scales.split(",")]:
            t0 = time.time()
            x = classifier_guided(ldm, lclf, labels, w, args.ddim_steps, seed=1).cpu()
            r = dict(scale=w, **judge(x, labels, clf, real, real_spread), seconds=round(time.time() - t0, 1))
            res["classifier_guidance"].append(r); print("classifier guidance", r, flush=True)

    # (b) the cost of CFG: one batched call on [uncond; cond] against one call on cond
    B, reps = sizes["cost_batch"], 1 if args.reduced or args.smoke else 2
    lab = torch.arange(10).repeat_interleave(B // 10)
    cost = {}
    for s in (1., 3.):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); ldm.sample_images(lab, sample_steps=args.ddim_steps, guidance_scale=s); ts.append(time.perf_counter() - t0)
        cost[s] = min(ts) / B
    res["cfg_cost"] = dict(batch=B, ddim_steps=args.ddim_steps, seconds_per_sample_no_guidance=cost[1.],
                           seconds_per_sample_cfg=cost[3.], ratio=cost[3.] / cost[1.])
    print("cfg cost", res["cfg_cost"], flush=True)

    # (c) pixel DDPM vs LDM, each measurement in a fresh process
    reps = 1 if args.smoke else 3 if args.reduced else 5
    res["pixel_vs_latent"] = [run_worker(args, k, sizes["train_batch"], reps) for k in ("train-pixel", "train-ldm", "train-ldm-encode")]
    res["pixel_vs_latent"] += [run_worker(args, k, sizes["sample_batch"], 1 if args.reduced or args.smoke else 2)
                               for k in ("sample-pixel", "sample-ldm")]
    for r in res["pixel_vs_latent"]: print(r, flush=True)
    res["loadavg_after"] = list(os.getloadavg())

    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    figure(res, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(res, out))
    print(f"wrote {out}, {out.with_suffix('.png')}, {out.with_suffix('.md')}")


def smoke_run(tmp: Path, run_dir: str) -> None:
    "--smoke: a 2-step MNIST autoencoder (GAN off) in tmp/vae and a 2-step LDM on it in run_dir: untrained, just the files."
    from ldm_nb.train_vae import mnist_vae_config, train_vae
    from ldm_nb.train_ldm import mnist_ldm_config, train_ldm
    train_vae(mnist_vae_config(str(tmp / "vae"), steps=2, log_every=1, sample_every=0, disc_factor=0., device="cpu"), progress=False)
    train_ldm(mnist_ldm_config(str(tmp / "vae"), run_dir, steps=2, log_every=1, sample_every=0, n_sample=1, sample_steps=2,
                               scale_images=256, cache_latents=False, device="cpu"), progress=False)


def figure(res, path):
    "Left: CFG's accuracy, diversity and FD against s; right: fidelity against diversity, both guidances, points labelled."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw=dict(width_ratios=[1, 1.25]))
    cf, cg = res["cfg"], res.get("classifier_guidance") or []
    s = [r["scale"] for r in cf]
    axs[0].plot(s, [r["class_accuracy"] for r in cf], "o-", ms=4, label="class accuracy")
    axs[0].plot(s, [r["diversity"] for r in cf], "s--", ms=4, label="diversity (rel. to real)")
    axs[0].set(xlabel="CFG scale s", ylim=(0, 1.6), yticks=[0, 0.25, 0.5, 0.75, 1, 1.25],
               title=f"classifier-free guidance, n={res['n_samples']}")
    ax2 = axs[0].twinx()                                  # FD on its own axis, scaled to stay below the legend
    ax2.plot(s, [r["fd"] for r in cf], "^:", ms=4, color="C3", label="FD (right axis)")
    ax2.axhline(res["fd_floor"], color="C3", lw=0.6, label=f"FD floor ({res['fd_floor']:.1f})")
    ax2.set_ylim(0, 1.6 * max(r["fd"] for r in cf)); ax2.set_ylabel("FD", color="C3")
    h1, l1 = axs[0].get_legend_handles_labels(); h2, l2 = ax2.get_legend_handles_labels()
    axs[0].legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", ncol=2)
    for rows, mk, name, sym, d in ((cf, "o-", "classifier-free (s)", "s", -5), (cg, "s--", "classifier guidance (w)", "w", 4)):
        if not rows: continue                             # labels: CFG's below left of its points, the other's above right
        axs[1].plot([r["diversity"] for r in rows], [r["class_accuracy"] for r in rows], mk, ms=4, label=name)
        for r in rows: axs[1].annotate(f"{sym}={r['scale']:g}", (r["diversity"], r["class_accuracy"]), fontsize=7,
                                       xytext=(d, d), textcoords="offset points", ha="right" if d < 0 else "left",
                                       va="top" if d < 0 else "bottom")
    axs[1].axvline(1, color="gray", lw=0.6, ls=":", label="real digits' diversity")
    axs[1].set(xlabel="diversity (within-class spread / real's)", ylabel="class accuracy (fidelity)",
               title="fidelity vs diversity", ylim=(0, 1.1))
    axs[1].margins(x=0.1)
    axs[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def markdown(res, out) -> str:
    L = [f"# LDM benchmark ({out.name})", "",
         f"CPU, {res['threads']} thread(s), load average {res['loadavg_before'][0]:.1f} before / {res['loadavg_after'][0]:.1f} after; "
         f"checkpoint step {res['ldm_step']}; {res['n_samples']} samples per row below (DDIM S={res['ddim_steps']}, eta 0); "
         f"FD floor at this n: {res['fd_floor']:.2f}." + (" Reduced run." if res["reduced"] else ""), "",
         "## (a) guidance", "", "| guidance | scale | class accuracy | FD | diversity (rel. to real) | seconds |", "|---|---|---|---|---|---|"]
    for name, key in (("classifier-free", "cfg"), ("classifier", "classifier_guidance")):
        for r in res.get(key) or []:
            L.append(f"| {name} | {r['scale']:g} | {r['class_accuracy']:.1%} | {r['fd']:.2f} | {r['diversity']:.2f} | {r['seconds']} |")
    if "latent_classifier" in res:
        lc = res["latent_classifier"]
        L += ["", f"Noisy-latent classifier: {lc['steps']} steps ({lc['seconds']} s); held-out accuracy at t = "
              + ", ".join(f"{t}: {a:.0%}" for t, a in lc["heldout_accuracy_at_t"].items()) + "."]
    c = res["cfg_cost"]
    L += ["", "## (b) the cost of classifier-free guidance", "",
          f"Batch {c['batch']}, DDIM S={c['ddim_steps']}: {c['seconds_per_sample_no_guidance'] * 1e3:.1f} ms per sample without "
          f"guidance, {c['seconds_per_sample_cfg'] * 1e3:.1f} ms with (one call on the doubled batch): x{c['ratio']:.2f}.", "",
          "## (c) pixel-space DDPM vs latent diffusion", "",
          "| measurement | params | batch | seconds | seconds per item | peak extra RSS (MB) |", "|---|---|---|---|---|---|"]
    for r in res["pixel_vs_latent"]:
        pk = "n/a" if r["peak_extra_mb"] is None else f"{r['peak_extra_mb']:.0f}"
        L.append(f"| {r['kind']} | {r['params'] / 1e6:.2f} M | {r['batch']} | {r['seconds']:.3f} | {r['seconds_per_item'] * 1e3:.2f} ms | {pk} |")
    L += ["", "train-ldm uses the cached posterior moments (the trainer's default); train-ldm-encode runs the frozen encoder "
          "on each batch. Sampling is DDIM S=50 without guidance; sample-ldm includes the decoder. Peak memory: VmHWM above "
          "the RSS with the model and inputs built, over a warm-up call and the timed calls, one fresh process per row."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()

"""Benchmark the MNIST KL autoencoder on this machine (not a test): what the KL weight and the GAN do, and what a step costs.

usage: python benchmarks/bench_vae.py [--steps N] [--disc-start D] [--n-eval 10000] [--threads 1] [--device cpu]
                                      [--out benchmarks/results/vae_mnist.json] [--smoke]

* quality: `mnist_vae_config` (f=4, 32x32x1 -> 4x8x8) trained for N steps with kl_weight in {1e-6, 1e-4} and the GAN
  off (disc_factor=0) or on from step D; each judged on n_eval random MNIST test digits: PSNR of the posterior-mode
  reconstructions; the Frechet distance (chapter 14's classifier features) between the reconstructions of one half of
  them and the *other* half of the real digits, next to the floor (the same distance between the two real halves: what
  perfect reconstructions score); the paired FD (reconstructions vs their own originals); the latent std over 10k
  training images and the scale factor 1/std latent diffusion would use;
* the downsampling factor: f = 2, 4, 8 (kl_weight 1e-6, GAN off), judged the same way: the LDM paper's shape (lower f,
  better reconstruction);
* cost: seconds per training step of each run before and after D, and, on a short separate run of the same model,
  the step with LPIPS (random VGG trunk: the same compute as the calibrated one) and the GAN each switched off.
Writes JSON and a markdown table (same stem, .md); the JSON's "meta" says how it was made (git commit, command line,
versions, threads, date).
--smoke: a tiny run (4 steps per run, GAN from step 2, 200 test digits, f in 2,4, one kl_weight, 1 timed step) that only
checks the script end to end, written to a temp folder (not --out)."""
import argparse, dataclasses, json, math, os, platform, statistics, sys, tempfile, time, warnings
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir


def step_times(metrics_path) -> dict:
    "Per-step wall times from consecutive metrics.jsonl lines (log_every=1): {step: seconds}."
    lines = [json.loads(l) for l in open(metrics_path)]
    return {b["step"]: b["seconds"] - a["seconds"] for a, b in zip(lines, lines[1:]) if b["step"] == a["step"] + 1}


def median_over(times: dict, lo: int, hi: int) -> float | None:
    "Median of the step times with lo < step <= hi (None if there are none)."
    v = [t for s, t in times.items() if lo < s <= hi]
    return statistics.median(v) if v else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/vae_mnist.json")
    ap.add_argument("--steps", type=int, default=500, help="training steps of each quality run")
    ap.add_argument("--disc-start", type=int, default=150, help="step the GAN switches on in the GAN runs")
    ap.add_argument("--n-eval", type=int, default=10000, help="MNIST test digits to evaluate on (even, <= 10000)")
    ap.add_argument("--n-latent", type=int, default=10000, help="training digits for the latent std")
    ap.add_argument("--timing-steps", type=int, default=12, help="timed steps of each cost run (after 3 warm-up steps)")
    ap.add_argument("--kl-weights", default="1e-6,1e-4")
    ap.add_argument("--factors", default="2,4,8,8x16",
                    help="the f sweep: factors (powers of 2 dividing 32), FxC for C latent channels instead of the base's")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script, written to a temp folder (not --out)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.disc_start, args.n_eval, args.n_latent, args.timing_steps = 4, 2, 200, 256, 1
        args.kl_weights, args.factors = "1e-6", "2,4"
        args.out = str(smoke_dir("vae") / Path(args.out).name)
    if args.n_eval % 2 or not 2 <= args.n_eval <= 10000: ap.error("--n-eval must be even, in [2, 10000]")
    try: factors = [tuple(int(u) for u in v.split("x")) for v in args.factors.split(",")]   # "8" or "8x16" (f x channels)
    except ValueError: ap.error(f"--factors must be a comma list of F or FxC integers, got {args.factors!r}")
    if any(len(fc) > 2 or fc[0] < 2 or fc[0] > 16 or fc[0] & (fc[0] - 1) or min(fc) < 1 for fc in factors):
        ap.error(f"--factors must be powers of 2 in [2, 16], each optionally xC latent channels, got {args.factors!r}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="LPIPS with a randomly initialized")
    from ldm_nb.train_vae import mnist_vae_config, train_vae, load_autoencoder, reconstruct, latent_std
    from ldm_nb.data import load_mnist
    from ldm_nb.metrics import get_mnist_classifier, classifier_features, feature_stats, fd_score, psnr
    t_start = time.time()
    base = mnist_vae_config()
    res = dict(device=args.device, torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               machine=platform.machine(), python=platform.python_version(),
               loadavg_before=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               steps=args.steps, disc_start=args.disc_start, n_eval=args.n_eval, n_fd=args.n_eval // 2,
               n_latent=args.n_latent, batch_size=base.batch_size, lr=base.lr, ae=base.to_dict()["ae"],
               disc_num_layers=base.disc_num_layers, disc_ndf=base.disc_ndf, disc_weight=base.disc_weight, runs=[],
               meta=run_meta(args.smoke))

    # the evaluation data: n_eval test digits in metrics.fd_floor's random order (seed 0; MNIST's test set is ordered by
    # writer population, so a first-half / second-half split would differ by more than sampling noise), halves A | B
    x_all = load_mnist("test", pad_to=32)[0]
    x_test = x_all[torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))[: args.n_eval]]   # (n, 1, 32, 32)
    h = args.n_eval // 2
    clf = get_mnist_classifier()
    fa, fb = classifier_features(x_test[:h], clf), classifier_features(x_test[h:], clf)
    stats_b, stats_all = feature_stats(fb), feature_stats(torch.cat([fa, fb]))
    res["fd_floor"] = fd_score(x_test[:h], stats_b, clf)                          # real A vs real B
    x_lat = load_mnist("train", pad_to=32, limit=args.n_latent)[0]

    def run_and_judge(cfg) -> dict:
        "Train `cfg`, then judge it on the test digits: PSNR, FD cross/paired, latent std; times."
        t0 = time.time(); train_vae(cfg, progress=False); wall = time.time() - t0
        times = step_times(f"{cfg.run_dir}/metrics.jsonl")
        last = [json.loads(l) for l in open(f"{cfg.run_dir}/metrics.jsonl")][-20:]
        ae, info = load_autoencoder(cfg.run_dir, device=args.device)
        t0 = time.time()
        rec = reconstruct(ae, x_test)
        sd = latent_std(ae, x_lat)
        gan = cfg.disc_factor > 0
        return dict(train_seconds=round(info["seconds"], 1), wall_seconds=round(wall, 1),
                    s_per_step_before_disc_start=median_over(times, 3, min(cfg.disc_start, cfg.steps) if gan else cfg.steps),
                    s_per_step_gan=median_over(times, cfg.disc_start + 3, cfg.steps) if gan else None,
                    psnr_db=psnr(rec, x_test)[1],
                    fd_cross=fd_score(rec[:h], stats_b, clf),                  # recon A vs real B
                    fd_paired=fd_score(rec, stats_all, clf),                   # recon A+B vs real A+B
                    train_rec_l1_last20=statistics.mean(l["rec_l1"] for l in last),
                    train_kl_last20=statistics.mean(l["kl"] for l in last),
                    latent_std=sd, scale_factor=1 / sd, params=sum(p.numel() for p in ae.parameters()),
                    eval_seconds=round(time.time() - t0, 1))

    with tempfile.TemporaryDirectory() as tmp:
        # 1. quality: kl_weight x GAN
        for kw in (float(v) for v in args.kl_weights.split(",")):
            for gan in (False, True):
                name = f"kl{kw:g}_{'gan' if gan else 'nogan'}"
                cfg = mnist_vae_config(f"{tmp}/{name}", steps=args.steps, kl_weight=kw, disc_factor=1.0 if gan else 0.0,
                                       disc_start=args.disc_start, log_every=1, ckpt_every=args.steps, sample_every=0,
                                       device=args.device)
                r = dict(name=name, kl_weight=kw, gan=gan, **run_and_judge(cfg))
                res["runs"].append(r)
                print(json.dumps(r), flush=True)

        # 2. the downsampling factor f = 2^(levels-1): ch_mult (1, 2), (1, 2, 2), (1, 2, 2, 2), the base's z channels
        #    or C of an FxC entry, kl_weight 1e-6 and the GAN off; f = 4 is the first run of section 1 (the same config), not trained again
        res["f_runs"] = []
        for fc in factors:
            f, c = fc[0], (fc[1] if len(fc) > 1 else base.ae.embed_dim)
            levels = int(math.log2(f)) + 1
            ae_cfg = dataclasses.replace(base.ae, ch_mult=(1,) + (2,) * (levels - 1), z_channels=c, embed_dim=c)
            same = [r for r in res["runs"] if r["kl_weight"] == 1e-6 and not r["gan"]] if ae_cfg == base.ae else []
            if same: r = {k: v for k, v in same[0].items() if k not in ("name", "kl_weight", "gan")}
            else:
                cfg = mnist_vae_config(f"{tmp}/f{f}c{c}", steps=args.steps, kl_weight=1e-6, disc_factor=0.0, ae=ae_cfg,
                                       disc_start=args.disc_start, log_every=1, ckpt_every=args.steps, sample_every=0,
                                       device=args.device)
                r = run_and_judge(cfg)
            side = 32 // f
            r = dict(f=f, ch_mult=list(ae_cfg.ch_mult), latent_shape=[ae_cfg.embed_dim, side, side],
                     compression=32 * 32 / (ae_cfg.embed_dim * side * side), reused_from_section_1=bool(same), **r)
            res["f_runs"].append(r)
            print(json.dumps(r), flush=True)

        # 3. cost: one step with LPIPS and the GAN each switched off (same model, GAN on from step 0)
        cost = {}
        for name, pw, df in (("lpips+gan", 1.0, 1.0), ("gan", 0.0, 1.0), ("lpips", 1.0, 0.0), ("neither", 0.0, 0.0)):
            n = 3 + args.timing_steps
            cfg = mnist_vae_config(f"{tmp}/t_{name}", steps=n, perceptual_weight=pw, lpips_random_trunk=True, disc_factor=df,
                                   disc_start=0, log_every=1, ckpt_every=n, sample_every=0, device=args.device)
            train_vae(cfg, progress=False)
            cost[name] = median_over(step_times(f"{tmp}/t_{name}/metrics.jsonl"), 3, n)
        res["s_per_step"] = cost
        res["share_in_full_step"] = dict(lpips=(cost["lpips+gan"] - cost["gan"]) / cost["lpips+gan"],
                                         gan=(cost["lpips+gan"] - cost["lpips"]) / cost["lpips+gan"])
        res["gan_share_without_lpips"] = (cost["gan"] - cost["neither"]) / cost["gan"]
        print(json.dumps(cost), flush=True)
    res["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    res["total_seconds"] = round(time.time() - t_start, 1)

    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


def markdown(res: dict) -> str:
    f = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"
    ae = res["ae"]
    lines = [f"MNIST KL autoencoder (`mnist_vae_config`: ch={ae['ch']}, ch_mult={tuple(ae['ch_mult'])}, f=4, latent "
             f"{ae['embed_dim']}x8x8), {res['steps']} steps of batch {res['batch_size']}, Adam lr {res['lr']}, "
             f"GAN from step {res['disc_start']}; {res['device']}, {res['threads']} thread(s), torch {res['torch']}. "
             f"PSNR on {res['n_eval']} random test digits; FD cross = reconstructions of {res['n_fd']} test digits vs the other "
             f"{res['n_fd']} real ones, floor (real vs real, same n) {res['fd_floor']:.2f}; FD paired = all reconstructions "
             f"vs their originals; latent std over {res['n_latent']} training digits.", "",
             "| kl_weight | GAN | PSNR (dB) | FD cross (floor %.2f) | FD paired | latent std | scale_factor | s/step before / after disc_start |" % res["fd_floor"],
             "|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lines.append(f"| {r['kl_weight']:g} | {'on' if r['gan'] else 'off'} | {f(r['psnr_db'])} | {f(r['fd_cross'])} | "
                     f"{f(r['fd_paired'])} | {f(r['latent_std'], 3)} | {f(r['scale_factor'], 3)} | "
                     f"{f(r['s_per_step_before_disc_start'], 3)} / {f(r['s_per_step_gan'], 3)} |")
    if res.get("f_runs"):
        lines += ["", f"Downsampling factor f (kl_weight 1e-6, GAN off, {res['steps']} steps; with the same "
                  f"{ae['embed_dim']} latent channels a larger f also compresses more, so the last row gives f=8 the "
                  "compression of f=4 through more channels). The LDM paper's KL autoencoders on "
                  "ImageNet: f=4 rFID 0.27, PSNR 27.5; f=8 rFID 0.90, PSNR 24.2.", "",
                  "| f | ch_mult | latent | compression | params | PSNR (dB) | FD cross (floor %.2f) | FD paired | latent std | s/step |" % res["fd_floor"],
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["f_runs"]:
            lines.append(f"| {r['f']} | {tuple(r['ch_mult'])} | {'x'.join(map(str, r['latent_shape']))} | {r['compression']:.0f}x | "
                         f"{r['params'] / 1e6:.2f} M | {f(r['psnr_db'])} | {f(r['fd_cross'])} | {f(r['fd_paired'])} | "
                         f"{f(r['latent_std'], 3)} | {f(r['s_per_step_before_disc_start'], 3)} |")
    c, s = res["s_per_step"], res["share_in_full_step"]
    lines += ["", "Seconds per training step (median, GAN on from step 0; LPIPS with a random VGG trunk, same compute):", "",
              "| LPIPS + GAN | GAN only | LPIPS only | neither | LPIPS share | GAN share | GAN share without LPIPS |",
              "|---|---|---|---|---|---|---|",
              f"| {c['lpips+gan']:.3f} | {c['gan']:.3f} | {c['lpips']:.3f} | {c['neither']:.3f} | {100 * s['lpips']:.0f}% | "
              f"{100 * s['gan']:.0f}% | {100 * res['gan_share_without_lpips']:.0f}% |", "",
              f"Load average before/after: {res['loadavg_before']} / {res['loadavg_after']}; total {res['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

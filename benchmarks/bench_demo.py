"""What `make demo` (`ldm-nb demo-ldm`) gets for its training steps (not a test): the class accuracy and FD of the
demo's evaluation after k LDM steps, for a few training recipes, on one autoencoder trained as the demo trains it.

usage: python benchmarks/bench_demo.py [--root runs/bench-demo] [--vae-steps 600] [--eval-at 800,1000,1200,1600,2000]
                                       [--recipe NAME:field=value,...] [--threads 1] [--out benchmarks/results/demo_steps.json]
                                       [--smoke]

* the autoencoder: chapter 16's MNIST config with the demo's settings (GAN off), trained once in ROOT/vae and reused;
* each recipe: the demo's LDM config (`mnist_ldm_config`) with the recipe's overrides, trained in ROOT/NAME and resumed
  from one --eval-at step to the next (resuming is bit-exact, so step k of the run is a k-step run of the same recipe
  only when the recipe's learning rate does not depend on the total: a decaying schedule is trained once per total);
* the evaluation is the demo's (`ldm_nb.demos.evaluate_ldm`) with --sampler (default DDIM S = 50, the demo's before chapter
  07b's table moved it to DPM-Solver++(2M) in 10 steps): 50 samples per class, guidance s = 3, seed 1; the class accuracy of
  chapter 14's classifier, FD against 500 real test digits (the same permutation as the demo) and the floor at n = 500.
Training seconds are process CPU seconds of the training calls (the machine may be shared; CPU time is what the
demo's wall time is, at one thread on an idle core). --smoke: 8x8 digits, 3 + 3 steps, in a temp folder."""
import argparse, dataclasses, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir


def parse_recipe(s: str) -> tuple[str, dict]:
    "'name:lr=2e-3,lr_schedule=cosine,ldm.loss_weighting=min_snr' -> (name, {field or part.field: value})"
    name, _, rest = s.partition(":")
    out = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        try: out[k] = json.loads(v)
        except json.JSONDecodeError: out[k] = v
    return name, out


def evaluate(ldm, n_per_class: int, smoke: bool, sampler: str = "ddim", sample_steps: int = 50) -> dict:
    "The demo's scores (chapter 17d's `evaluate_ldm`, the function `demo_ldm` calls) with this sampler; --smoke: only the sampling."
    from ldm_nb.ldm import class_grid
    from ldm_nb.demos import evaluate_ldm
    if smoke: return dict(n=len(class_grid(ldm, n_per_class, sample_steps=2, guidance_scale=3., seed=1)))
    x, scores = evaluate_ldm(ldm, n_per_class, sample_steps=sample_steps, sampler=sampler)
    return dict(n=len(x), sampler=f"{sampler} S={sample_steps}", **{k: v for k, v in scores.items() if k != "class_accuracy_per_class"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="runs/bench-demo")
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--eval-at", default="800,1000,1200,1600,2000")
    ap.add_argument("--sampler", default="ddim", help="the evaluation's sampler (default ddim, as every committed row; the demo's is dpmpp-2m)")
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--recipe", action="append", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/demo_steps.json")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ldm_nb.train_vae import mnist_vae_config, digits_vae_config, train_vae
    from ldm_nb.train_ldm import mnist_ldm_config, digits_ldm_config, train_ldm, load_ldm, LDM_CHECKPOINT
    from ldm_nb.runs import run_paths
    root = smoke_dir("demo") if a.smoke else Path(a.root)
    out = root / "demo_steps.json" if a.smoke else Path(a.out)
    recipes = [parse_recipe(r) for r in (a.recipe or ["constant:"])]
    eval_at = [3, 6] if a.smoke else [int(s) for s in a.eval_at.split(",")]
    meta, fs = run_meta(a.smoke), root / "vae"
    vcfg = (digits_vae_config(str(fs), steps=3) if a.smoke else
            mnist_vae_config(str(fs), steps=a.vae_steps, sample_every=0, disc_factor=0.))
    ck_v = fs / "checkpoints" / "last.safetensors"
    c0 = time.process_time()
    if not ck_v.exists(): train_vae(vcfg, progress=False)
    res = dict(meta=meta, vae_steps=vcfg.steps, vae_cpu_seconds=round(time.process_time() - c0, 1), recipes={})
    for name, over in recipes:
        run, rows = root / name, []
        for k in eval_at:
            kw = dict(steps=k, sample_every=0, ckpt_every=10 ** 9, **{f: v for f, v in over.items() if "." not in f})
            cfg = (digits_ldm_config(str(fs), str(run), **kw) if a.smoke else mnist_ldm_config(str(fs), str(run), **kw))
            for part in ("ldm", "unet"):                                 # 'ldm.loss_weighting=min_snr': a nested field
                sub = {f.split(".", 1)[1]: v for f, v in over.items() if f.startswith(part + ".")}
                if sub: cfg = dataclasses.replace(cfg, **{part: dataclasses.replace(getattr(cfg, part), **sub)})
            ck = run_paths(run)["ckpt"]
            done = LDM_CHECKPOINT.load(ck)["step"] if ck.exists() else 0
            c0 = time.process_time()
            if done < k: train_ldm(cfg, resume=done > 0, progress=False)
            t_train = time.process_time() - c0
            ldm, info = load_ldm(ck)
            c0 = time.process_time()
            row = dict(step=info["step"], train_cpu_seconds_this_call=round(t_train, 1), **evaluate(ldm, 50 if not a.smoke else 1, a.smoke, a.sampler, a.sample_steps),
                       eval_cpu_seconds=round(time.process_time() - c0, 1), seconds_in_checkpoint=info.get("seconds"))
            rows.append(row); print(name, over, row, flush=True)
        res["recipes"][name] = dict(overrides=over, rows=rows, meta=meta)      # each recipe: its own run
    prev = json.loads(out.read_text()) if out.exists() else {}                  # keep other recipes' rows
    if prev.get("recipes"): res["recipes"] = {**prev["recipes"], **res["recipes"]}
    if prev.get("vae_cpu_seconds") and not res["vae_cpu_seconds"]: res["vae_cpu_seconds"] = prev["vae_cpu_seconds"]
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()

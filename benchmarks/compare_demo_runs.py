"""Is one `make demo` run as good as another? The demo's evaluation on several finished runs, with error bars (not a test).

usage: python benchmarks/compare_demo_runs.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--n-per-class 100] [--boot 500]
                                              [--threads 1] [--out benchmarks/results/demo_runs.json] [--smoke]

Each RUN_DIR is a finished `ldm-nb demo-ldm` run folder (its checkpoints/last.safetensors). Every run's LDM draws
the same samples the demo draws (`class_grid`: DPM-Solver++(2M), 10 steps, guidance s = 3, seed 1, so the same
x_T in every run), --n-per-class of each digit, and is scored with chapter 14's classifier: class accuracy, and FD
against as many real test digits as the demo uses (the same ones), with its bootstrap SD over the samples; then
each run's FD minus the first run's, with the paired bootstrap SD (both resampled at the same indices, since they
share x_T). The demo itself scores 50 per class; a difference of a few FD units between two runs at that n is
within the noise, which this measures. The JSON has the commit and command line ("meta"); the markdown table (same
stem, .md) is printed too.
--smoke: sklearn-sized check of the script on one tiny demo run made in a temp folder."""
import argparse, json, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir, fd_with_sd, paired_diff, real_reference


def score_run(run: Path, npc: int, clf):
    "(classifier features, class accuracy, per-class accuracy, seconds) of the demo's samples of the run's LDM."
    import torch
    from ldm_nb.train_ldm import load_ldm
    from ldm_nb.ldm import class_grid
    from ldm_nb.demos import DEMO_SAMPLER, DEMO_SAMPLE_STEPS
    from ldm_nb.metrics import classifier_features, classifier_accuracy
    ldm, info = load_ldm(run / "checkpoints" / "last.safetensors")
    t0 = time.perf_counter()
    x = class_grid(ldm, npc, sampler=DEMO_SAMPLER, sample_steps=DEMO_SAMPLE_STEPS, guidance_scale=3., seed=1).cpu()
    labels = torch.arange(10).repeat_interleave(npc)                     # row = class
    acc = classifier_accuracy(clf, x, labels)
    per = [classifier_accuracy(clf, x[labels == c], labels[labels == c]) for c in range(10)]
    return classifier_features(x, clf), acc, per, info["step"], time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="NAME=RUN_DIR, the first is the reference")
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/demo_runs.json")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    if a.smoke:
        d = smoke_dir("compare_demo_runs")
        subprocess.run([sys.executable, "-m", "ldm_nb", "demo-ldm", "--run-dir", str(d / "run"), "--vae-steps", "2",
                        "--ldm-steps", "2", "--n-per-class", "10", "--no-progress", "--procs", "1"], check=True,
                       capture_output=True)
        a.runs, a.n_per_class, a.boot, a.out = [f"a={d / 'run'}", f"b={d / 'run'}"], 10, 20, str(d / "demo_runs.json")
    runs = []
    for r in a.runs:
        name, sep, path = r.partition("=")
        if not sep or not (Path(path) / "checkpoints" / "last.safetensors").is_file():
            ap.error(f"{r!r}: give NAME=RUN_DIR of a finished demo-ldm run")
        runs.append((name, Path(path)))
    if len(runs) < 1: ap.error("give at least one NAME=RUN_DIR")
    meta = run_meta(a.smoke)
    from ldm_nb.metrics import get_mnist_classifier, fd_floor
    clf, n = get_mnist_classifier(), 10 * a.n_per_class
    ref = real_reference(n, clf)
    feats, rows = {}, []
    for name, path in runs:
        f, acc, per, step, sec = score_run(path, a.n_per_class, clf)
        feats[name] = f
        fd, sd = fd_with_sd(f, ref, a.boot, torch.Generator().manual_seed(0))
        row = dict(name=name, run_dir=str(path), ldm_step=step, class_accuracy=acc, class_accuracy_per_class=per,
                   fd=fd, fd_sd=sd, sample_seconds=round(sec, 1))
        demo = path / "demo_metrics.json"
        if demo.is_file():
            m = json.loads(demo.read_text())
            row["demo_metrics"] = {k: m.get(k) for k in ("class_accuracy", "fd", "fd_floor", "n", "sampler", "procs", "threads", "seconds")}
        if rows:
            d, dsd = paired_diff(f, feats[runs[0][0]], ref, a.boot, torch.Generator().manual_seed(1))
            row.update(fd_minus_first=d, fd_minus_first_sd=dsd)
        rows.append(row)
        print(f"{name}: accuracy {acc:.1%}, FD {fd:.2f} +- {sd:.2f}" + (f", minus {runs[0][0]}: {row['fd_minus_first']:+.2f} +- "
              f"{row['fd_minus_first_sd']:.2f}" if len(rows) > 1 else ""), flush=True)
    res = dict(meta=meta, n_per_class=a.n_per_class, n=n, boot=a.boot, fd_floor=fd_floor(n, clf), threads=a.threads,
               what="the demo's samples (DPM-Solver++(2M) 10 steps, s = 3, seed 1) of each run's LDM, scored at n", rows=rows)
    md = [f"The demo's evaluation at n = {n} ({a.n_per_class} per class, the same x_T in every run; FD floor "
          f"{res['fd_floor']:.2f}; SDs: bootstrap over the samples, {a.boot} resamples, the difference paired):", "",
          "| run | class accuracy | FD | FD minus the first run's | the demo's own score (n = 500) |", "|---|---|---|---|---|"]
    for r in rows:
        dm = r.get("demo_metrics") or {}
        own = f"{dm['class_accuracy']:.1%}, FD {dm['fd']:.2f}" if dm else ""
        diff = f"{r['fd_minus_first']:+.2f} ± {r['fd_minus_first_sd']:.2f}" if "fd_minus_first" in r else ""
        md.append(f"| {r['name']} | {r['class_accuracy']:.1%} | {r['fd']:.2f} ± {r['fd_sd']:.2f} | {diff} | {own} |")
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n"); out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md)); print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

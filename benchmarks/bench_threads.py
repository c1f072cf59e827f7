"""Benchmark the demo's training speed in processes x threads layouts (one
process of 1 or 2 torch threads, two processes of 1 thread each), on an idle
machine and beside one busy process (not a test).

usage: python benchmarks/bench_threads.py [--layouts 1x1 1x2 2x1] [--warmup 3]
           [--steps 20] [--repeats 1] [--out benchmarks/results/threads_cpu.json]
           [--smoke]

What `make demo` (`ldm-nb demo-ldm`) trains, on the CPU:
* the autoencoder: chapter 16's `mnist_vae_config` with the GAN off
  (`disc_factor=0`), as the demo makes it;
* the LDM: chapter 17's `mnist_ldm_config` (guidance scale 3) on that
  autoencoder (here the one the first condition trained for a few steps: a
  step costs the same whatever the weights).
A layout PxT is P processes of T threads: P > 1 is data-parallel training
(DDP over gloo) as `ldm-nb ... --procs P` runs it, each process with its share
of the global batch. Each condition (model x layout x load) runs in fresh
processes, so that torch's thread pool starts anew (OMP_NUM_THREADS and
`ldm_nb.core.set_threads` both give the count), through the real training
loop (rank 0's log, the one `ldm-nb` writes): --warmup steps, then
--steps timed ones, timed from metrics.jsonl (log_every=1). Data loading, the
latent cache and the end-of-run checkpoint and grid (made tiny) are not timed.
The load "busy" is one other process running a pure-Python busy loop at the
same priority; the worker starts it when its training loop begins (after the
data and the latent cache, which would take minutes beside it) and kills it
when the run ends (rank 0 starts it). With --repeats R the conditions run R
interleaved rounds and each reports its median.
The JSON: per condition the steps/s over the timed steps and the median step;
per model and layout the slowdown under load (idle steps/s / busy steps/s);
per model and load each layout's speed-up over the first one; the CPUs
and `default_threads()`; "meta" says how it was made (commit, command line,
versions, date). The markdown table (same stem, .md) is printed too.
--smoke: sklearn's 8x8 digits with the toy configs (`digits_vae_config`,
`digits_ldm_config`), 1 + 2 steps, one round, written to a temp folder (not
--out): it checks the script end to end, in under a minute on idle CPUs."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir

MODELS = {"vae": "autoencoder", "ldm": "LDM"}
LOADS = ("idle", "busy")
# one core's worth of pure-Python work; it stops by itself when its parent,
# the worker, is gone, and keeps its count of 10**6-loops and its seconds in
# the file argv[1] (what the other work on the machine got done)
BUSY = ("import os, sys, time\np, f, t0, n = os.getppid(), sys.argv[1], time.time(), 0\n"
        "while os.getppid() == p:\n    for _ in range(10**6): pass\n    n += 1\n"
        "    with open(f + '.tmp', 'w') as h: h.write(f'{n} {time.time() - t0}')\n"
        "    os.replace(f + '.tmp', f)")


def busy_rate(path) -> float | None:
    "Loops per second the busy process recorded (None if it recorded none)."
    try: n, sec = open(path).read().split()
    except (OSError, ValueError): return None
    return round(int(n) / float(sec), 2) if float(sec) > 0 else None


def busy_alone(seconds: float = 5.) -> float:
    "The busy loop's rate with the machine to itself (its share of a core is 1)."
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "rate")
        p = subprocess.Popen([sys.executable, "-c", BUSY, f])
        time.sleep(seconds); p.kill(); p.wait()
        return busy_rate(f)


def loadavg():
    "The 1, 5 and 15-minute load averages (None where the OS has none)."
    if not hasattr(os, "getloadavg"): return None
    return [round(v, 2) for v in os.getloadavg()]


def make_trainer(args):
    "The demo's trainer (the toy one with --smoke), for warmup + steps steps."
    kw = dict(steps=args.warmup + args.steps, log_every=1, ckpt_every=10**6,
              sample_every=0, n_sample=1, device="cpu")
    if args.worker == "vae":
        from ldm_nb.train_vae import (mnist_vae_config, digits_vae_config,
                                      VAETrainer)
        make = digits_vae_config if args.smoke else mnist_vae_config
        return VAETrainer(make(args.run_dir, disc_factor=0., **kw))
    from ldm_nb.train_ldm import mnist_ldm_config, digits_ldm_config, LDMTrainer
    make = digits_ldm_config if args.smoke else mnist_ldm_config
    cfg = make(args.first_stage, args.run_dir, guidance_scale=3.,
               sample_steps=2, **kw)
    return LDMTrainer(cfg)


def step_timing(run_dir, warmup: int, steps: int) -> dict:
    "Seconds, steps/s and the median step over the timed steps, from metrics."
    lines = [json.loads(l) for l in open(Path(run_dir) / "metrics.jsonl")]
    t = {l["step"]: l["seconds"] for l in lines}
    total = warmup + steps
    seconds = t[total] - (t[warmup] if warmup else 0.)
    per_step = [t[s] - t[s - 1] for s in range(warmup + 1, total + 1)
                if s - 1 in t]
    median = round(statistics.median(per_step), 4) if per_step else None
    return dict(timed_steps=steps, seconds=round(seconds, 3),
                steps_per_s=round(steps / seconds, 3), median_step_s=median)


def train_worker(args) -> dict:
    "In the fresh process: set the threads, train (beside the load), time it."
    import torch
    from ldm_nb.core import set_threads
    from ldm_nb.runs import run_training
    set_threads(args.threads)
    trainer = make_trainer(args)
    busy, batches, rate_file = [], trainer.batches, str(Path(args.run_dir) / "busy_rate")
    def start_load(start):                        # the training loop begins
        if args.load == "busy" and os.environ.get("RANK", "0") == "0":
            busy.append(subprocess.Popen([sys.executable, "-c", BUSY, rate_file]))
        return batches(start)
    trainer.batches = start_load
    try: run_training(trainer, progress=False)
    finally:
        for p in busy: p.kill(); p.wait()
    return dict(threads=torch.get_num_threads(), load_ran=bool(busy), busy_loops_per_s=busy_rate(rate_file) if busy else None,
                **step_timing(args.run_dir, args.warmup, args.steps),
                loadavg_after=loadavg())


def parse_layout(text: str) -> tuple[int, int]:
    "'2x1' -> (2 processes, 1 thread each)."
    try: p, t = (int(v) for v in text.lower().split("x"))
    except ValueError: raise argparse.ArgumentTypeError(f"a layout is PxT, e.g. 2x1, got {text!r}") from None
    if p < 1 or t < 1: raise argparse.ArgumentTypeError(f"a layout needs P, T >= 1, got {text!r}")
    return p, t


def run_condition(args, model, layout, load, run_dir, first_stage) -> dict:
    "One condition in fresh processes (rank 0 starts the busy loop itself)."
    procs, threads = layout
    cmd = [sys.executable, __file__, "--worker", model, "--load", load,
           "--run-dir", str(run_dir), "--threads", str(threads),
           "--warmup", str(args.warmup), "--steps", str(args.steps)]
    cmd += ["--first-stage", str(first_stage)] if first_stage else []
    cmd += ["--smoke"] if args.smoke else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    if procs > 1:                             # the environment ldm-nb --procs gives its processes
        from ldm_nb.runs import free_port
        env.update(WORLD_SIZE=str(procs), LOCAL_WORLD_SIZE=str(procs), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(free_port()))
    before = loadavg()
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**env, "RANK": str(r), "LOCAL_RANK": str(r)} if procs > 1 else env)
          for r in range(procs)]
    outs = [p.communicate() for p in ps]
    for p, (o, e) in zip(ps, outs):
        if p.returncode:
            raise RuntimeError(f"{model}, {procs}x{threads}, {load}: failed\n{e[-3000:]}")
    res = json.loads(outs[0][0].strip().splitlines()[-1])          # rank 0
    if res["threads"] != threads:
        raise RuntimeError(f"asked for {threads} threads, got {res['threads']}")
    return dict(model=model, load=load, procs=procs, layout=f"{procs}x{threads}", loadavg_before=before, **res)


def summarize(conds: list, layouts: list, alone: float | None) -> tuple[dict, dict]:
    "Median steps/s per (model, layout, load); slowdowns; speed-ups over the first layout."
    runs = {}
    for c in conds:
        key = (c["model"], c["layout"], c["load"])
        runs.setdefault(key, []).append(c["steps_per_s"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    slow = {m: {n: round(med[m, n, "idle"] / med[m, n, "busy"], 2)
                for n in layouts} for m in MODELS}
    speed = {m: {ld: {n: round(med[m, n, ld] / med[m, layouts[0], ld], 2)
                      for n in layouts} for ld in LOADS} for m in MODELS}
    rates = {}
    for c in conds:
        if c["load"] == "busy" and c.get("busy_loops_per_s"): rates.setdefault((c["model"], c["layout"]), []).append(c["busy_loops_per_s"])
    share = {m: {n: round(statistics.median(rates[m, n]) / alone, 2) if (m, n) in rates and alone else None
                 for n in layouts} for m in MODELS}
    return med, dict(slowdown_under_load=slow, speedup_over_first=speed, busy_share=share)


def table(med: dict, ratios: dict, res: dict) -> str:
    "The markdown table: steps/s idle and busy, and the slowdown."
    rows = ["| model | processes x threads | idle steps/s | busy steps/s | slowdown | the busy process's share of a core |",
            "|---|---|---|---|---|---|"]
    for m, name in MODELS.items():
        for n in res["layouts"]:
            s, share = ratios["slowdown_under_load"][m][n], ratios["busy_share"][m][n]
            rows.append(f"| {name} | {n} | {med[m, n, 'idle']:.2f} | "
                        f"{med[m, n, 'busy']:.2f} | {s:.1f}x | {share:.2f} |")
    head = (f"The demo's training steps per second (`demo-ldm`: its autoencoder "
            f"and its LDM) on {res['cpus']} available CPUs (default_threads() ="
            f" {res['default_threads']}), {res['warmup']} warm-up + "
            f"{res['steps']} timed steps, median of {res['repeats']} round(s), "
            f"each in a fresh process; busy: beside one other process running "
            f"a pure-Python busy loop; slowdown: idle / busy; the busy process's "
            f"share: its loops per second beside the training over its rate alone.")
    return head + "\n\n" + "\n".join(rows) + "\n"


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/threads_cpu.json")
    ap.add_argument("--layouts", type=parse_layout, nargs="+", default=[(1, 1), (1, 2), (2, 1)],
                    help="processes x threads per process (default: 1x1 1x2 2x1)")
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)    # a worker's
    ap.add_argument("--warmup", type=int, default=3,
                    help="untimed steps first (default: 3)")
    ap.add_argument("--steps", type=int, default=20,
                    help="timed steps per condition (default: 20)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="interleaved rounds of all conditions (default: 1)")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny run to check the script, to a temp folder")
    ap.add_argument("--worker", choices=sorted(MODELS), help=argparse.SUPPRESS)
    ap.add_argument("--load", choices=LOADS, default="idle",
                    help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--first-stage", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if min(args.steps, args.repeats) < 1 or args.warmup < 0:
        ap.error("--steps and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(train_worker(args))); return
    if args.smoke:
        args.warmup, args.steps, args.repeats = 1, 2, 1
        args.out = str(smoke_dir("threads") / Path(args.out).name)
    from ldm_nb.core import available_cpus, default_threads
    layouts = list(dict.fromkeys(args.layouts))
    names = [f"{p}x{t}" for p, t in layouts]
    small = "digits_vae_config", "digits_ldm_config"
    demo = "mnist_vae_config(disc_factor=0)", "mnist_ldm_config(guidance_scale=3)"
    res = dict(cpus=available_cpus(), cpu_count=os.cpu_count(),
               default_threads=default_threads(), layouts=names,
               warmup=args.warmup, steps=args.steps, repeats=args.repeats,
               busy_load=BUSY, busy_alone_loops_per_s=busy_alone(2. if args.smoke else 5.),
               configs=dict(zip(MODELS, small if args.smoke else demo)),
               meta=run_meta(args.smoke))
    conds, t0 = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        first_stage = None                    # the first autoencoder run
        for r in range(args.repeats):
            for model in MODELS:
                for lay, n in zip(layouts, names):
                    for load in LOADS:
                        d = Path(tmp) / f"{model}_{n}_{load}_{r}"
                        fs = first_stage if model == "ldm" else None
                        c = run_condition(args, model, lay, load, d, fs)
                        if model == "vae": first_stage = first_stage or d
                        conds.append(dict(round=r, **c))
                        print(f"{MODELS[model]}, {n}, {load}: "
                              f"{c['steps_per_s']:.3f} steps/s (median step "
                              f"{c['median_step_s']} s)", flush=True)
    med, ratios = summarize(conds, names, res["busy_alone_loops_per_s"])
    res.update(conditions=conds, wall_seconds=round(time.time() - t0, 1),
               steps_per_s={f"{m}/{n}/{ld}": round(v, 3)
                            for (m, n, ld), v in med.items()}, **ratios)
    md = table(med, ratios, res)
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(md)
    print("\n" + md)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

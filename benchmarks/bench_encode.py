"""What the batch size costs the LDM trainer's one pass of the encoder over its training set (not a test).

usage: python benchmarks/bench_encode.py [--n 6000] [--batches 500 256 128 64 32] [--repeats 3] [--threads 1]
                                         [--out benchmarks/results/encode_cpu.json] [--smoke]

`train_ldm` caches the frozen first stage's posterior moments of every training image once (`encode_moments`,
chapter 17). This times that pass for the demo's MNIST autoencoder (`mnist_vae_config().ae`, random weights: the
cost does not depend on them) over --n images of 1 x 32 x 32 at each batch size, and at the default batch
(`encode_batch_size`, which keeps one activation of the first level within 4 MB), in interleaved rounds at a fixed
thread count, each pass in a fresh process as the trainer makes it (the allocator's state after other sizes would
change what is measured), after one warm-up batch of its size. Per batch size, the median over rounds of: wall seconds, the process's user and system CPU seconds,
and its minor page faults (`getrusage`): an activation too large for the allocator's heap is mapped fresh from the
OS at every call and faulted in page by page, which the system time and the faults show. The JSON has the commit and
command line ("meta"); the markdown table (same stem, .md) is printed too.
--smoke: 200 images, two batch sizes, one round, into a temp folder."""
import argparse, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir


def one_pass(ae, x, batch_size) -> dict:
    "Wall, user and system seconds and minor page faults of one encode_moments pass."
    from ldm_nb.train_ldm import encode_moments
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    encode_moments(ae, x, batch_size)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return dict(wall_s=wall, user_s=r1.ru_utime - r0.ru_utime, sys_s=r1.ru_stime - r0.ru_stime,
                minor_faults=r1.ru_minflt - r0.ru_minflt)


def worker(n: int, batch: int) -> dict:
    "In a fresh process: the demo's autoencoder, n images, one warm-up batch, then the timed pass."
    import torch
    from ldm_nb.autoencoder import AutoencoderKL
    from ldm_nb.train_vae import mnist_vae_config
    torch.manual_seed(0)
    ae = AutoencoderKL(mnist_vae_config().ae).eval()
    x = torch.rand(n, 1, 32, 32) * 2 - 1
    one_pass(ae, x[:batch], batch)
    return one_pass(ae, x, batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--batches", type=int, nargs="+", default=[500, 256, 128, 64, 32])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/encode_cpu.json")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke: a.n, a.batches, a.repeats, a.out = 200, [100, 20], 1, str(smoke_dir("encode") / "encode_cpu.json")
    if min(a.n, a.repeats, a.threads, *a.batches) < 1: ap.error("--n, --batches, --repeats and --threads must be >= 1")
    import torch
    torch.set_num_threads(a.threads)
    if a.worker: print(json.dumps(worker(a.n, a.worker))); return
    meta = run_meta(a.smoke)
    from ldm_nb.autoencoder import AutoencoderKL
    from ldm_nb.train_vae import mnist_vae_config
    from ldm_nb.train_ldm import encode_batch_size
    torch.manual_seed(0)
    ae = AutoencoderKL(mnist_vae_config().ae).eval()
    default = encode_batch_size(ae, torch.zeros(1, 1, 32, 32))
    sizes = list(dict.fromkeys([*a.batches, default]))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    runs = {b: [] for b in sizes}
    for _ in range(a.repeats):
        for b in sizes:
            r = subprocess.run([sys.executable, __file__, "--worker", str(b), "--n", str(a.n), "--threads", str(a.threads)],
                               capture_output=True, text=True, env=env, check=True)
            runs[b].append(json.loads(r.stdout.strip().splitlines()[-1]))
    rows = [dict(batch_size=b, default=b == default, per_activation_mb=round(b * ae.cfg.ch * ae.cfg.ch_mult[0] * 32 * 32 * 4 / 2**20, 2),
                 **{k: round(statistics.median(r[k] for r in runs[b]), 3) for k in runs[b][0]}) for b in sizes]
    best = min(r["wall_s"] for r in rows)
    for r in rows: r["wall_over_best"] = round(r["wall_s"] / best, 2)
    res = dict(meta=meta, n=a.n, threads=a.threads, repeats=a.repeats, default_batch=default, rows=rows, runs={str(b): v for b, v in runs.items()},
               what="one encode_moments pass of the demo's MNIST autoencoder over n images, per batch size")
    md = [f"`encode_moments` over {a.n} images of 1x32x32 (the demo's autoencoder, {a.threads} thread(s), median of "
          f"{a.repeats} interleaved rounds, each pass in a fresh process; default batch {default}):", "",
          "| batch | first-level activation (MB) | wall s | user s | system s | minor faults | wall / best |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['batch_size']}{' (default)' if r['default'] else ''} | {r['per_activation_mb']} | {r['wall_s']:.2f} | {r['user_s']:.2f} | "
           f"{r['sys_s']:.2f} | {r['minor_faults']} | {r['wall_over_best']:.2f} |" for r in rows]
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n"); out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md)); print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

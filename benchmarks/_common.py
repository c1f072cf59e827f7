"""What every benchmark JSON records about how it was made: `run_meta()` (the git commit and whether the tree differs
from it, the command line, versions, threads, date), and `smoke_dir()`, the temporary folder a `--smoke` run writes to.

The benchmarks are run as scripts (`python benchmarks/bench_x.py`), so this file is imported as `_common` from
their folder."""
import datetime, hashlib, os, platform, shlex, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks") / "results"          # the committed results: a dirty file there is not a dirty source
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LDM_NB_LPIPS_RANDOM_TRUNK", "LDM_NB_CACHE", "CUDA_VISIBLE_DEVICES")


def _git(*args: str) -> str | None:
    "The stdout of `git args` (read-only commands) in the repository, or None if git or the repository is not there."
    try:
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError): return None
    return r.stdout if r.returncode == 0 else None


def git_state(max_paths: int = 50) -> dict:
    """{commit, dirty, dirty_paths, diff_sha256}: HEAD; whether tracked or untracked (not ignored) paths outside
    benchmarks/results/ differ from it, and which; the SHA-256 of `git diff HEAD` (tracked changes), to tell dirty trees apart."""
    commit = _git("rev-parse", "HEAD")
    commit = commit.strip() if commit else None
    status = _git("status", "--porcelain", "--untracked-files=all") if commit else None
    if status is None: return dict(commit=commit, dirty=None, dirty_paths=None, diff_sha256=None)
    paths = [line[3:] for line in status.splitlines() if len(line) > 3]          # 'XY path' or 'XY old -> new'
    paths = [p for p in paths if not Path(p.split(" -> ")[-1].strip('"')).is_relative_to(RESULTS)]
    diff = _git("diff", "HEAD", "--binary", "--", ".", f":(exclude){RESULTS.as_posix()}") if paths else ""
    return dict(commit=commit, dirty=bool(paths),
                dirty_paths=paths[:max_paths] + ([f"... {len(paths) - max_paths} more"] if len(paths) > max_paths else []),
                diff_sha256=hashlib.sha256(diff.encode()).hexdigest() if paths and diff is not None else None)


def run_meta(smoke: bool = False) -> dict:
    "How this run was made: git state, command line, versions, threads, machine, date (UTC); call it before writing results."
    import torch
    try:
        from importlib.metadata import version
        ldm_nb_version = version("ldm_nb")
    except Exception: ldm_nb_version = None
    return dict(**git_state(), command=shlex.join([Path(sys.executable).name, *sys.argv]), argv=list(sys.argv),
                cwd=os.getcwd(), python=platform.python_version(), torch=torch.__version__, ldm_nb=ldm_nb_version,
                threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(), cpu_count=os.cpu_count(),
                machine=platform.machine(), platform=platform.platform(),
                env={k: os.environ.get(k) for k in ENV_VARS if k in os.environ},
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), smoke=smoke)


def smoke_dir(name: str) -> Path:
    "A fresh temporary folder for a --smoke run's outputs (never benchmarks/results/)."
    return Path(tempfile.mkdtemp(prefix=f"ldm_nb_smoke_{name}_"))


# --- The FD machinery of the MNIST sampler tables (bench_ddim_table.py, bench_solvers.py) ---------------------------

def sample_store(run_dir, name: str, key: dict) -> Path:
    "RUN_DIR/name/, where drawn samples are kept; emptied when `key` (model step, n, batch) differs from the saved one."
    import json
    store = Path(run_dir) / name
    store.mkdir(parents=True, exist_ok=True)
    saved = json.loads((store / "key.json").read_text()) if (store / "key.json").exists() else None
    if saved != key:                                   # samples of another model / n / batch: not reusable
        for f in store.glob("*.pt"): f.unlink()
        (store / "key.json").write_text(json.dumps(key))
    return store


def load_or_draw(path: Path, draw):
    "(samples, reused, seconds): the samples saved at `path` (float16), else `draw()`'s, saved there."
    import time, torch
    t0 = time.perf_counter()
    if path.exists(): return torch.load(path, weights_only=True).float(), True, time.perf_counter() - t0
    x = draw()
    torch.save(x.half(), path)
    return x, False, time.perf_counter() - t0


def real_reference(n: int, clf):
    "Chapter 14's feature statistics of n random real MNIST test digits (seed 1): the reference of every FD table."
    import torch
    from ldm_nb.data import load_mnist
    from ldm_nb.metrics import feature_stats, classifier_features
    real = load_mnist("test")[0][torch.randperm(10000, generator=torch.Generator().manual_seed(1))[:n]]
    return feature_stats(classifier_features(real, clf))


def fd_with_sd(feats, ref, boot: int, gen) -> tuple:
    "FD of the samples' features against `ref`, and its bootstrap SD over the samples (`boot` resamples, ref fixed)."
    import statistics, torch
    from ldm_nb.metrics import feature_stats, frechet_distance
    reps = [frechet_distance(*feature_stats(feats[torch.randint(0, len(feats), (len(feats),), generator=gen)]), *ref)
            for _ in range(boot)]
    return frechet_distance(*feature_stats(feats), *ref), (statistics.stdev(reps) if len(reps) > 1 else None)


def paired_diff(fa, fb, ref, boot: int, gen) -> tuple:
    "FD(a) - FD(b) and its bootstrap SD, resampling both rows at the same indices (they share x_T)."
    import statistics, torch
    from ldm_nb.metrics import feature_stats, frechet_distance
    fd = lambda f: frechet_distance(*feature_stats(f), *ref)
    reps = []
    for _ in range(boot):
        i = torch.randint(0, len(fa), (len(fa),), generator=gen)
        reps.append(fd(fa[i]) - fd(fb[i]))
    return fd(fa) - fd(fb), statistics.stdev(reps) if len(reps) > 1 else None


def interleaved_timing(draws: list, rounds: int, batch: int) -> list:
    """Seconds per sample of each `draws[i](batch, round)`: `rounds` rounds that each time every draw in turn
    (interleaving spreads the machine's load changes over all rows); a list of the rounds' times per draw."""
    import time
    times = [[] for _ in draws]
    for rnd in range(rounds):
        for i, draw in enumerate(draws):
            t0 = time.perf_counter(); draw(batch, rnd)
            times[i].append((time.perf_counter() - t0) / batch)
    return times


def mnist_table_setup(args, ensure_model, store_name: str, load_info=None, config: str = "mnist_config", **extra) -> tuple:
    """What the MNIST sampler tables (bench_ddim_table.py, bench_solvers.py) share before they sample: the trained
    model (`ensure_model`), its sample store, chapter 14's classifier and the real reference features, and the
    result dict's common fields (plus `extra`). `load_info(checkpoint)` gives {step, seconds} (default: chapter 15d's
    `load_checkpoint`). Returns (checkpoint, info, store, clf, ref, res)."""
    import torch
    from ldm_nb.train_ddpm import load_checkpoint
    from ldm_nb.metrics import get_mnist_classifier, fd_floor
    ck = ensure_model(args.run_dir, args.train_steps, "cpu", **(dict(n_sample=1) if args.smoke else {}))  # smoke: a 1-image grid
    info = (load_info or load_checkpoint)(ck)
    key = dict(model_step=info["step"], n=args.n, batch=args.batch)
    store = sample_store(args.run_dir, store_name, key)
    clf = get_mnist_classifier()
    ref = real_reference(args.n, clf)
    res = dict(**key, run_dir=args.run_dir, train_seconds=round(info["seconds"], 1), config=config,
               device="cpu", torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               machine=platform.machine(), python=platform.python_version(),
               loadavg_before=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               fd_floor=fd_floor(args.n, clf), boot=args.boot, **extra, rows=[], meta=run_meta(args.smoke))
    return ck, info, store, clf, ref, res

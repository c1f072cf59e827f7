"""The wall time of `make demo`'s training and evaluation (not a test): one `ldm-nb demo-ldm` from an empty run folder,
as a new user runs it, timed from outside, with the machine's load before and after.

usage: python benchmarks/time_demo.py [--run-dir DIR] [--out benchmarks/results/demo_ldm_timing.json] [--book]
                                      [--copy-results] [--smoke] [-- extra demo-ldm flags]

* the command is `python -m ldm_nb demo-ldm --run-dir DIR --no-progress` with its default processes and threads (the
  start line it prints, e.g. `ldm-nb: 1 thread in each of 2 local processes (2 CPUs available)`, is recorded), in a fresh process; DIR must not exist;
* --book also times `python scripts/build_book.py` (the other half of `make demo` once installed), before the demo;
* --copy-results writes the run's metrics to benchmarks/results/demo_ldm.json and its grid to demo_ldm_grid.png (what
  the landing page and chapter 17d show), so that the book's grid, its numbers and this timing are one run.
The wall time is the claim only on a machine that is otherwise idle (the JSON records the load average before and
after); the CPU seconds of the process are what the demo costs at its thread count, and on a loaded machine (shared
caches, descheduling) they overstate what the same run costs on an idle one.
--smoke: a 2 + 2-step demo into a temp folder (checks the script end to end)."""
import argparse, json, os, resource, shutil, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_meta, smoke_dir, REPO


def cpu_children() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN); return u.ru_utime + u.ru_stime

def timed(cmd: list, env=None) -> tuple[float, float, subprocess.CompletedProcess]:
    "(wall seconds, CPU seconds, result) of `cmd` run to its end."
    t0, c0 = time.perf_counter(), cpu_children()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    return time.perf_counter() - t0, cpu_children() - c0, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--out", default="benchmarks/results/demo_ldm_timing.json")
    ap.add_argument("--book", action="store_true")
    ap.add_argument("--copy-results", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    tmp = smoke_dir("time_demo") if a.smoke or a.run_dir is None else None
    run = Path(a.run_dir) if a.run_dir else tmp / "run"
    if run.exists(): sys.exit(f"--run-dir {run} exists: the timing is of a run from nothing")
    out = (tmp / "timing.json") if a.smoke else Path(a.out)
    meta, res = run_meta(a.smoke), {}
    res["load_before"] = list(os.getloadavg())
    if a.book and not a.smoke:
        s, _, r = timed([sys.executable, "scripts/build_book.py"])
        if r.returncode: sys.exit(f"the book build failed:\n{r.stderr[-2000:]}")
        res["book_seconds"] = round(s, 1)
    extra = ["--vae-steps", "2", "--ldm-steps", "2", "--n-per-class", "10", *a.extra] if a.smoke else a.extra
    cmd = [sys.executable, "-m", "ldm_nb", "demo-ldm", "--run-dir", str(run), "--no-progress", *extra]
    s, cpu, r = timed(cmd)
    if r.returncode: sys.exit(f"demo-ldm failed ({r.returncode}):\n{r.stderr[-3000:]}")
    res.update(command=" ".join(["ldm-nb", *cmd[3:]]), wall_seconds=round(s, 1), cpu_seconds=round(cpu, 1), load_after=list(os.getloadavg()),
               start_line=r.stderr.splitlines()[0] if r.stderr else None, stdout=r.stdout.strip().splitlines()[-2:],
               demo_metrics=json.loads((run / "demo_metrics.json").read_text()))
    if "book_seconds" in res: res["make_demo_seconds_after_install"] = round(res["book_seconds"] + s, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, what="one `ldm-nb demo-ldm` from an empty run folder, timed from outside "
                                   "(wall clock), with the processes and threads " + ("the command's flags say" if {"--threads", "--procs"} & set(a.extra)
                                   else "of the CLI's defaults"), **res), indent=1))
    if a.copy_results and not a.smoke:
        res_dir = REPO / "benchmarks" / "results"
        (res_dir / "demo_ldm.json").write_text(json.dumps(res["demo_metrics"], indent=2))
        shutil.copy(run / "samples" / "demo_grid.png", res_dir / "demo_ldm_grid.png")
    print(json.dumps({k: v for k, v in res.items() if k != "demo_metrics"}, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()

"""The `ldm-nb` command line, end to end in subprocesses: train, resume, sample, bad input, a SIGKILL mid-run, and one
writer per run folder. Everything is tiny (sklearn's 8x8 digits, a 16-channel UNet, T = 50) and on the CPU."""
import json, random, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file
from conftest import LDM, MOD, ENV, TINY_DDPM as TINY, ckpt, run, run_many, assert_one_line_error

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "A 4-step run on the digits, made once for the module."
    d = tmp_path_factory.mktemp("runs") / "tiny"
    r = run(LDM, "train", "--run-dir", d, "--steps", 4, *TINY, check=0)
    assert "trained to step 4" in r.stdout
    return d

def test_help(capsys):
    (p1, o1, e1), (p3, o3, e3) = run_many([[*LDM, "--help"], [*MOD, "train", "--help"]])
    assert p1.returncode == 0 and all(c in o1 for c in ("train", "sample", "train-vae", "train-ldm", "sample-ldm", "demo-ldm"))
    assert p3.returncode == 0 and "--model-channels" in o3 and "(default: 16)" in o3 and "--resume" in o3
    from ldm_nb.cli import main
    with pytest.raises(SystemExit) as e: main(["train", "--help"])
    assert e.value.code == 0 and capsys.readouterr().out == o3      # python -m ldm_nb train == ldm-nb train

def test_train_writes_the_run(tiny_run):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["dataset"] == "digits" and cfg["image_size"] == 8 and cfg["unet"]["model_channels"] == 16
    lines = [json.loads(l) for l in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3, 4] and all(set(l) == {"step", "loss", "loss_simple", "lr", "seconds"} for l in lines)
    assert ckpt(tiny_run).exists() and (tiny_run / "samples" / "step_0000004.png").exists()

def test_resume_is_exact(tiny_run, tmp_path):
    "4 steps + resume to 8 == 8 steps straight (bit for bit); the fresh run also takes its config from --config."
    half = tmp_path / "half"; shutil.copytree(tiny_run, half)
    (pr, o, e), (pf, _, ef) = run_many([[*MOD, "train", "--run-dir", half, "--steps", 8, "--resume", "--no-progress"],
                                        [*LDM, "train", "--config", tiny_run / "config.json", "--run-dir", tmp_path / "full", "--steps", 8]])
    assert pr.returncode == 0 and pf.returncode == 0, (e, ef)
    a, b = load_file(ckpt(half)), load_file(ckpt(tmp_path / "full"))
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith(("model.", "ema.", "optim.")): assert torch.equal(a[k], b[k]), k
    steps = [json.loads(l)["step"] for l in (half / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert json.loads((half / "config.json").read_text())["steps"] == 8

def test_sample_ddpm_and_ddim(tiny_run, tmp_path):
    outs = [tiny_run / "samples" / "grid.png", tmp_path / "ddim.png"]          # the default --out, and a given one
    res = run_many([[*LDM, "sample", "--run-dir", tiny_run, "--n", 4],
                    [*LDM, "sample", "--checkpoint", ckpt(tiny_run), "--n", 9, "--sampler", "ddim", "--steps", 10,
                     "--eta", 0.5, "--no-ema", "--out", outs[1]]])
    from PIL import Image
    for (p, o, e), out in zip(res, outs):
        assert p.returncode == 0, e
        assert str(out) in o and Image.open(out).format == "PNG"
    assert "DDPM T=50, EMA weights, step 4" in res[0][1] and "DDIM S=10 eta=0.5, raw weights" in res[1][1]
    assert Image.open(outs[1]).size == (3 * 9 + 1,) * 2                      # 3 x 3 grid of 8x8 with 1 px padding
    assert not list(outs[1].parent.glob(".*.tmp"))

def test_bad_input_one_line_and_nothing_touched(tiny_run, tmp_path, capsys):
    "Each bad input: exit status 2, one line on stderr, no traceback, and no file written or changed."
    from ldm_nb.cli import main
    runs = tmp_path / "r"; shutil.copytree(tiny_run, runs)
    good = ckpt(runs).read_bytes(); metrics = (runs / "metrics.jsonl").read_text()
    trunc = tmp_path / "t"; shutil.copytree(tiny_run, trunc)
    ckpt(trunc).write_bytes(good[: len(good) // 2]); truncated = ckpt(trunc).read_bytes()
    (tmp_path / "a_file").write_text("x")
    # in separate processes: the exit status and stderr of the real command
    procs = [
        ([*LDM, "train", "--run-dir", runs, "--steps", 8, "--model-channels", 32, "--resume", "--no-progress"],
         "--model-channels is 16 in the checkpoint but 32 was requested"),
        ([*LDM, "sample", "--run-dir", trunc], "cannot read checkpoint"),
        ([*MOD, "train", "--run-dir", tmp_path / "n1", *TINY, "--steps", 0], "steps must be >= 1, got 0"),
    ]
    for (p, out, err), (_, contains) in zip(run_many([c for c, _ in procs]), procs):
        assert_one_line_error(p.returncode, err, contains)
    # in this process (the same main(), without paying for a torch import per case)
    cases = [
        (["train", "--run-dir", runs, "--steps", 8, "--timesteps", 100, "--resume"], "--timesteps is 50 in the checkpoint"),
        (["train", "--run-dir", runs, *TINY, "--steps", 8], "already has a checkpoint"),
        (["train", "--run-dir", trunc, "--steps", 8, "--resume"], "cannot read checkpoint"),
        (["sample", "--run-dir", runs, "--sampler", "ddim", "--steps", 51], "steps must be <= 50, got 51"),
        (["sample", "--checkpoint", tmp_path / "none.safetensors"], "does not exist"),
        (["sample", "--run-dir", runs, "--sampler", "plms"], "invalid choice: 'plms'"),
        (["sample", "--run-dir", runs, "--out", tmp_path / "x.jpg"], "--out must be a .png file"),
        (["train", "--run-dir", tmp_path / "n2", *TINY, "--dataset", "cifar", "--image-size", 32], "no such folder"),
        (["train", "--run-dir", tmp_path / "n3", *TINY, "--dataset", tmp_path / "a_file", "--image-size", 8], "not a folder"),
        (["train", "--run-dir", tmp_path / "n4", *TINY, "--dataset", "cifar"], "--image-size is required for an image folder"),
        (["train", "--run-dir", tmp_path / "n5", *TINY, "--channel-mult", "1,x"], "expected comma-separated ints"),
        (["train", "--run-dir", tmp_path / "n6", "--stepz", 3], "unrecognized arguments: --stepz"),
        (["train", "--config", tmp_path / "nope.json"], "config file"),
    ]
    for argv, contains in cases:
        rc = main([str(a) for a in argv])
        assert_one_line_error(rc, capsys.readouterr().err, contains)
    assert ckpt(runs).read_bytes() == good and (runs / "metrics.jsonl").read_text() == metrics
    assert ckpt(trunc).read_bytes() == truncated                              # a failed load repairs or replaces nothing
    assert not any((tmp_path / f"n{i}").exists() for i in range(1, 7))        # bad input: no run folder made

def test_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    "Kill a run that checkpoints every step at a random moment; last.safetensors loads, and --resume continues it."
    from ldm_nb.train_ddpm import load_checkpoint
    d = tmp_path / "killed"
    args = [*TINY, "--model-channels", 32, "--ckpt-every", 1, "--log-every", 1]
    p = subprocess.Popen([*LDM, "train", "--run-dir", str(d), "--steps", "100000", *map(str, args)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        t0 = time.time()
        while not ckpt(d).exists():
            assert p.poll() is None and time.time() - t0 < 60; time.sleep(0.05)
        time.sleep(random.uniform(0.2, 1.0))
    finally:
        p.send_signal(signal.SIGKILL); p.wait()
    step = load_checkpoint(ckpt(d))["step"]
    assert step >= 1
    r = run(LDM, "train", "--run-dir", d, "--steps", step + 2, "--resume", "--no-progress", check=0)
    assert load_checkpoint(ckpt(d))["step"] == step + 2 and not list(ckpt(d).parent.glob(".*.tmp"))
    steps = [json.loads(l)["step"] for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, step + 3))                  # lines logged after the last checkpoint were dropped

def test_threads_start_line(tiny_run, tmp_path):
    "The console script says its torch threads in one line on stderr: the ones --threads asks for, or the default."
    from ldm_nb.launch import threads_line
    from ldm_nb.core import default_threads
    args = ["sample", "--run-dir", tiny_run, "--n", 1, "--sampler", "ddim", "--steps", 2, "--out", tmp_path / "g.png"]
    no_omp = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}
    (p1, o1, e1), (p2, o2, e2) = run_many([[*LDM, *args, "--threads", 1], [*MOD, *args]], env=no_omp)
    assert p1.returncode == 0 and p2.returncode == 0, (e1, e2)
    assert e1 == threads_line(1) + "\n" and e2 == threads_line(default_threads()) + "\n", (e1, e2)
    assert "wrote 1 samples" in o1 and "wrote 1 samples" in o2
    (p3, _, e3), = run_many([[*MOD, *args]], env={**no_omp, "OMP_NUM_THREADS": "3"})     # the user's variable is kept
    assert p3.returncode == 0 and e3 == threads_line(3) + "\n", e3

def test_threads_applied(tiny_run, tmp_path, capsys, monkeypatch):
    "Inside the sampler torch has the threads asked for; the caller's come back; under torchrun the default is shared."
    from ldm_nb import cli
    from ldm_nb.core import default_threads
    from ldm_nb.launch import threads_line
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen, real = [], cli.sample_checkpoint
    monkeypatch.setattr(cli, "sample_checkpoint", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    args = ["sample", "--run-dir", str(tiny_run), "--n", "1", "--sampler", "ddim", "--steps", "2", "--out", str(tmp_path / "g.png")]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert [cli.main([*args, "--threads", "1"]), cli.main([*args, "--threads", "2"]), cli.main(args)] == [0, 0, 0]
        assert seen == [1, 2, default_threads()] and torch.get_num_threads() == 3
        assert capsys.readouterr().err.splitlines() == [threads_line(n) for n in (1, 2, default_threads())]
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2"); monkeypatch.setenv("RANK", "1")      # torchrun's second process
        assert cli.main(args) == 0 and seen[-1] == max(1, default_threads() // 2)
        assert capsys.readouterr().err == ""                                               # only rank 0 speaks
    finally:
        torch.set_num_threads(old)

@pytest.mark.parametrize("cmd", ["train", "sample", "train-vae", "train-ldm", "sample-ldm", "demo", "demo-ldm"])
def test_bad_threads(cmd, tmp_path, capsys):
    "--threads 0, -1 or x: one line naming --threads, exit status 2, nothing made, on every command."
    from ldm_nb.cli import main
    for value, contains in (("0", "--threads must be >= 1, got 0"), ("-1", "--threads must be >= 1, got -1"),
                            ("x", "--threads must be an int, got 'x'")):
        rc = main([cmd, "--run-dir", str(tmp_path / "new"), "--threads", value])
        assert_one_line_error(rc, capsys.readouterr().err, contains)
    assert not (tmp_path / "new").exists()

@pytest.mark.parametrize("cmd", ["train", "train-vae", "train-ldm", "demo", "demo-ldm"])
def test_bad_procs(cmd, tmp_path, capsys):
    "--procs 0, -1 or x: one line naming --procs, exit status 2, no process started, nothing made."
    from ldm_nb.cli import main
    for value, contains in (("0", "--procs must be >= 1, got 0"), ("-1", "--procs must be >= 1, got -1"),
                            ("x", "--procs must be an int, got 'x'")):
        rc = main([cmd, "--run-dir", str(tmp_path / "new"), "--procs", value])
        assert_one_line_error(rc, capsys.readouterr().err, contains)
    assert not (tmp_path / "new").exists()

def test_procs_bad_input_before_or_in_the_processes(tmp_path):
    "The demos check their flags before they start processes; a trainer's processes fail alike and rank 0 says it once."
    r = run(LDM, "demo-ldm", "--run-dir", tmp_path / "d", "--procs", 2, "--n-per-class", 5)
    assert_one_line_error(r.returncode, r.stderr, "--n-per-class must be >= 10, got 5")
    r = run(LDM, "train", "--run-dir", tmp_path / "t", "--steps", 2, *TINY, "--procs", 3)          # batch 32 over 3
    assert_one_line_error(r.returncode, r.stderr, "--batch-size 32 must be divisible by the number of processes 3")
    assert not (tmp_path / "d").exists() and not list((tmp_path / "t").glob("checkpoints/*"))

def test_procs_trains_in_two_processes(tmp_path):
    "--procs 2: the start line counts the processes, rank 0 alone reports, and the checkpoint has the steps."
    r = run(LDM, "train", "--run-dir", tmp_path / "p", "--steps", 2, *TINY, "--procs", 2, check=0)
    assert r.stderr.splitlines()[0].startswith("ldm-nb: 1 thread in each of 2 local processes")
    assert r.stdout.count("trained to step 2") == 1 and ckpt(tmp_path / "p").exists()

def test_bad_omp_num_threads(tmp_path, capsys, monkeypatch):
    "An OMP_NUM_THREADS that is not a positive int is one line naming it (without --threads, which overrides it)."
    from ldm_nb.cli import main
    for value, contains in (("x", "OMP_NUM_THREADS must be an int, got 'x'"), ("0", "OMP_NUM_THREADS must be >= 1, got 0")):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        rc = main(["train", "--run-dir", str(tmp_path / "new"), "--steps", "1"])
        assert_one_line_error(rc, capsys.readouterr().err, contains)
    assert not (tmp_path / "new").exists()

"""`train-vae` end to end, in process through `ldm_nb.cli.main`: a run's files, exact resume, and the
one-line errors for a truncated checkpoint and a mismatched config. Tiny: sklearn's 8x8 digits, a 16-channel f=2
autoencoder, a one-layer discriminator switched on at step 2, on the CPU."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

torch.set_num_threads(1)
from ldm_nb.train_vae import load_autoencoder, VAETrainConfig
from conftest import TINY_VAE as TINY, MOD, ENV, ckpt, main, snapshot, assert_one_line_error as _one_line

def run(*args) -> int: return main("train-vae", *args)

def assert_one_line_error(capsys, rc, contains): _one_line(rc, capsys.readouterr().err, contains)

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "A 3-step run on the digits, made once for the module."
    d = tmp_path_factory.mktemp("runs") / "tiny"
    assert run("--run-dir", d, "--steps", 3, *TINY) == 0
    return d

def test_train_writes_the_run(tiny_run, capsys):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["dataset"] == "digits" and cfg["image_size"] == 8 and cfg["ae"]["ch"] == 16 and cfg["ae"]["ch_mult"] == [1, 2]
    assert cfg["steps"] == 3 and cfg["disc_start"] == 2 and cfg["perceptual_weight"] == 0
    lines = [json.loads(l) for l in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3]
    assert lines[0]["disc_loss"] is None and lines[2]["disc_loss"] is not None      # the GAN from step 2 (0-based) on
    assert all({"loss", "rec_l1", "kl", "nll", "g_loss", "d_weight", "seconds"} <= set(l) for l in lines)
    from PIL import Image
    grid = Image.open(tiny_run / "samples" / "step_0000003.png")
    assert grid.size == (8 * 9 + 1, 2 * 9 + 1)                          # 8 originals over 8 reconstructions, 1-px gaps
    t = load_file(ckpt(tiny_run))
    assert {"loss.logvar", "rng.posterior", "rng.torch"} <= set(t)
    assert all(any(k.startswith(p) for k in t) for p in ("ae.", "disc.", "opt_ae.state.", "opt_disc.state."))
    ae, info = load_autoencoder(tiny_run)
    assert info["step"] == 3 and isinstance(info["config"], VAETrainConfig) and not ae.training
    assert not any(p.requires_grad for p in ae.parameters())

def test_resume_is_exact(tiny_run, tmp_path):
    "3 steps + resume to 5 == 5 steps straight, bit for bit (the straight run takes its config from --config)."
    half = tmp_path / "half"; shutil.copytree(tiny_run, half)
    assert run("--run-dir", half, "--steps", 5, "--resume", "--no-progress") == 0
    assert run("--config", tiny_run / "config.json", "--run-dir", tmp_path / "full", "--steps", 5, "--no-progress") == 0
    a, b = load_file(ckpt(half)), load_file(ckpt(tmp_path / "full"))
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k
    assert [json.loads(l)["step"] for l in (half / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert json.loads((half / "config.json").read_text())["steps"] == 5

def test_truncated_checkpoint(tiny_run, tmp_path, capsys):
    d = tmp_path / "cut"; shutil.copytree(tiny_run, d)
    data = ckpt(d).read_bytes(); ckpt(d).write_bytes(data[: len(data) // 2])
    before = snapshot(d)
    assert_one_line_error(capsys, run("--run-dir", d, "--steps", 5, "--resume"), "cannot read checkpoint")
    assert snapshot(d) == before                                        # nothing written, nothing removed

def test_config_mismatch(tiny_run, tmp_path, capsys):
    d = tmp_path / "other"; shutil.copytree(tiny_run, d)
    before = snapshot(d)
    assert_one_line_error(capsys, run("--run-dir", d, "--steps", 5, "--resume", "--ch", 32),
                          "--ch is 16 in the checkpoint but 32 was requested")
    assert_one_line_error(capsys, run("--run-dir", d, "--steps", 5, "--resume", "--kl-weight", 0.1),
                          "--kl-weight is 1e-06 in the checkpoint but 0.1 was requested")
    assert_one_line_error(capsys, run("--run-dir", d, "--steps", 5, *TINY), "already has a checkpoint")
    assert_one_line_error(capsys, run("--run-dir", d, "--steps", 0), "steps must be >= 1")
    assert_one_line_error(capsys, run("--run-dir", d, "--stpes", 5), "unrecognized arguments: --stpes")
    assert snapshot(d) == before

def test_module_entry_point():
    "`python -m ldm_nb train-vae --help` is `ldm-nb train-vae --help`."
    r = subprocess.run([*MOD, "train-vae", "--help"], capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "--kl-weight" in r.stdout and "--resume" in r.stdout and "(default: 1e-06)" in r.stdout

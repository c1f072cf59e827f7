"""`train-ldm` and `sample-ldm` end to end through `ldm_nb.cli.main`: train, exact resume, class grids with
guidance (DDPM and DDIM), img2img and inpainting from PNG files, and bad input (exit 2, one line).
Everything is tiny (sklearn's 8x8 digits, an untrained f=2 autoencoder, a 16-channel UNet, T = 50) and on the CPU."""
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ldm_nb.autoencoder import AutoencoderKL, AutoencoderConfig
from ldm_nb.train_ldm import save_first_stage
from conftest import TINY_LDM as TINY, MOD, ENV, TORCHRUN, DUMP, ckpt, main as run, assert_one_line_error


def one_line_error(capsys, rc, contains): assert_one_line_error(rc, capsys.readouterr().err, contains)


def write_png(a: np.ndarray, path) -> Path:
    Image.fromarray(a.astype(np.uint8)).save(path)
    return Path(path)


def cells(path, rows, cols, size=8):
    "The (rows, cols, size, size) uint8 images of a PNG grid written by save_png (1 px padding)."
    g = np.asarray(Image.open(path))
    assert g.shape == (rows * (size + 1) + 1, cols * (size + 1) + 1), g.shape
    return np.stack([np.stack([g[1 + r * (size + 1):1 + r * (size + 1) + size, 1 + c * (size + 1):1 + c * (size + 1) + size]
                               for c in range(cols)]) for r in range(rows)])


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    torch.manual_seed(0)
    ae = AutoencoderKL(AutoencoderConfig(resolution=8, ch=8, ch_mult=(1, 2), z_channels=2, embed_dim=2, num_groups=4))
    return save_first_stage(ae, tmp_path_factory.mktemp("fs") / "vae.safetensors")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, vae):
    "A 3-step run on the digits, made once for the module."
    d = tmp_path_factory.mktemp("runs") / "tiny"
    assert run("train-ldm", "--first-stage", vae, "--run-dir", d, "--steps", 3, *TINY) == 0
    return d


def test_train_writes_the_run(tiny_run, capsys):
    import json
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["dataset"] == "digits" and cfg["image_size"] == 8 and cfg["unet"]["in_channels"] == 2
    assert cfg["unet"]["context_dim"] == 16 and cfg["ldm"]["conditioning_key"] == "crossattn" and cfg["ldm"]["scale_factor"] is None
    steps = [json.loads(l)["step"] for l in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    t = load_file(ckpt(tiny_run))
    assert torch.isfinite(t["scale_factor"]) and t["scale_factor"] > 0
    assert any(k.startswith("first_stage.") for k in t) and any(k.startswith("cond.") for k in t)
    cells(tiny_run / "samples" / "step_0000003.png", 10, 2)                 # 10 rows (classes) of 2


def test_resume_is_bit_identical(tiny_run, vae, tmp_path, capsys):
    "3 steps + resume to 6 == 6 steps straight, bit for bit (weights, embedder, EMA, AdamW, scale factor)."
    import shutil
    half = tmp_path / "half"; shutil.copytree(tiny_run, half)
    assert run("train-ldm", "--run-dir", half, "--steps", 6, "--resume", "--no-progress") == 0
    assert run("train-ldm", "--first-stage", vae, "--run-dir", tmp_path / "full", "--steps", 6, *TINY) == 0
    a, b = load_file(ckpt(half)), load_file(ckpt(tmp_path / "full"))
    assert a.keys() == b.keys()
    keys = [k for k in a if k.startswith(("model.", "cond.", "ema.", "optim.", "first_stage.", "scale_factor"))]
    assert len(keys) > 50
    for k in keys: assert torch.equal(a[k], b[k]), k
    assert "trained to step 6" in capsys.readouterr().out


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sample_grid_classes_and_guidance(tiny_run, tmp_path, sampler, capsys):
    out = tmp_path / f"{sampler}.png"
    assert run("sample-ldm", "--run-dir", tiny_run, "--class", "3,5,7", "--n", 4, "--guidance-scale", 3, "--sampler", sampler,
               "--steps", 5, "--seed", 1, "--out", out) == 0
    assert str(out) in capsys.readouterr().out
    cells(out, 3, 4)                                                        # 3 classes x 4
    one = tmp_path / "one.png"
    assert run("sample-ldm", "--checkpoint", ckpt(tiny_run), "--class", 3, "--n", 2, "--guidance-scale", 0,
               "--sampler", sampler, "--steps", 5, "--out", one) == 0
    cells(one, 1, 2)
    if sampler == "ddim":                                                    # default: all 10 classes; same seed, same grid
        assert run("sample-ldm", "--run-dir", tiny_run, "--n", 2, "--steps", 5, "--out", tmp_path / "a.png") == 0
        assert run("sample-ldm", "--run-dir", tiny_run, "--n", 2, "--steps", 5, "--out", tmp_path / "b.png") == 0
        assert np.array_equal(cells(tmp_path / "a.png", 10, 2), cells(tmp_path / "b.png", 10, 2))


def test_img2img_and_inpaint_from_png(tiny_run, tmp_path, capsys):
    from ldm_nb.data import load_digits_tensor
    init = ((load_digits_tensor()[0][0, 0] + 1) * 127.5).round().numpy()
    init_png = write_png(init, tmp_path / "init.png")
    mask = np.zeros((8, 8)); mask[:4] = 255                                  # white top half = keep
    mask_png = write_png(mask, tmp_path / "mask.png")
    out = tmp_path / "img2img.png"
    assert run("sample-ldm", "--run-dir", tiny_run, "--class", "1,2", "--n", 3, "--init-image", init_png, "--strength", 0.5,
               "--steps", 6, "--out", out) == 0
    assert "img2img" in capsys.readouterr().out
    cells(out, 2, 3)
    out = tmp_path / "inpaint.png"
    assert run("sample-ldm", "--run-dir", tiny_run, "--class", "1,2", "--n", 3, "--init-image", init_png, "--mask", mask_png,
               "--guidance-scale", 2, "--steps", 6, "--out", out) == 0
    c = cells(out, 2, 3)
    assert (c[:, :, :4] == np.asarray(Image.open(init_png))[:4]).all()      # the kept half is the init image, exactly
    assert (c[:, :, 4:] != np.asarray(Image.open(init_png))[4:]).any()      # the rest is generated


def test_bad_input_exits_2_with_one_line(tiny_run, vae, tmp_path, capsys):
    one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--class", 10), "--class must be in [0, 9] (the model has 10 classes), got 10")
    one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--class", "2,x"), "--class must be an int or a comma-separated list")
    init_png = write_png(np.zeros((8, 8)), tmp_path / "init.png")
    for s, msg in (("0", "strength must be > 0, got 0.0"), ("1.5", "strength must be <= 1, got 1.5")):
        one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--init-image", init_png, "--strength", s), msg)
    small = write_png(np.full((4, 4), 255), tmp_path / "small.png")
    one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--init-image", init_png, "--mask", small),
                   "--mask is 4x4 but --init-image is 8x8: they must have the same size")
    big = write_png(np.zeros((12, 12)), tmp_path / "big.png")
    one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--init-image", big, "--strength", 0.5), "--init-image must be 8x8")
    one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--init-image", init_png), "needs exactly one of --strength")
    one_line_error(capsys, run("sample-ldm", "--run-dir", tiny_run, "--strength", 0.5), "--strength is for img2img")
    one_line_error(capsys, run("train-ldm", "--first-stage", tmp_path / "nope.safetensors", "--run-dir", tmp_path / "r", *TINY),
                   "first stage")
    assert not (tmp_path / "r").exists()
    one_line_error(capsys, run("train-ldm", "--run-dir", tmp_path / "r", *TINY), "--first-stage PATH is required")
    one_line_error(capsys, run("sample-ldm", "--run-dir", tmp_path / "nothing"), "does not exist")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    one_line_error(capsys, run("sample-ldm", "--checkpoint", tmp_path / "junk.safetensors"), "cannot read checkpoint")
    one_line_error(capsys, run("train-ldm", "--run-dir", tiny_run, "--steps", 9, "--model-channels", 32, "--resume", "--no-progress"),
                   "--model-channels is 16 in the checkpoint but 32 was requested")


def test_module_entry_point():
    r = subprocess.run([*MOD, "train-ldm", "--help"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0 and "--first-stage" in r.stdout and "--p-uncond" in r.stdout and "(default: 0.1)" in r.stdout


def test_torchrun_two_processes(vae, tmp_path):
    "torchrun with 2 CPU processes (gloo): the ranks end identical, rank 0 writes, and it matches one process up to rounding."
    args = ["--first-stage", str(vae), "--steps", "4", *TINY]
    r = subprocess.run([*TORCHRUN, DUMP, str(tmp_path / "dump"), "train-ldm", "--run-dir", str(tmp_path / "ddp"), *args],
                       capture_output=True, text=True, env=ENV, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("trained to step 4") == 1                          # rank 0 alone reports (and writes)
    a, b = load_file(tmp_path / "dump" / "rank0.safetensors"), load_file(tmp_path / "dump" / "rank1.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run("train-ldm", "--run-dir", tmp_path / "one", *args) == 0
    one, two = load_file(ckpt(tmp_path / "one")), load_file(ckpt(tmp_path / "ddp"))
    diff = max((one[k] - two[k]).abs().max().item() for k in one if k.startswith(("model.", "cond.")))
    assert diff < 1e-4, diff

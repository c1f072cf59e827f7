"""`ldm-nb sd txt2img | img2img | inpaint` (chapter 17g's `add_sd_commands`) through chapter 18's `cli_parser` and
`run_cli`: a PNG from a tiny original checkpoint, and bad input as one line, exit status 2, nothing written."""
import numpy as np
from pathlib import Path
import pytest
import torch
from PIL import Image

from ldm_nb.cli import cli_parser, run_cli
from ldm_nb.sd import StableDiffusion, tiny_sd_config, write_tiny_tokenizer
from ldm_nb.sd_checkpoint import save_stable_diffusion
from ldm_nb.sd_pipelines import add_sd_commands


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    save_stable_diffusion(StableDiffusion(tiny_sd_config()), d / "v1.safetensors")
    save_stable_diffusion(StableDiffusion(tiny_sd_config(inpainting=True)), d / "inp.ckpt")
    write_tiny_tokenizer(d / "tok")
    Image.new("RGB", (32, 32), (200, 30, 30)).save(d / "in.png")
    Image.new("RGB", (40, 32), (200, 30, 30)).save(d / "odd.png")
    m = Image.new("L", (32, 32), 255); m.paste(0, (8, 8, 24, 24)); m.save(d / "mask.png")
    Image.new("L", (16, 16), 255).save(d / "small_mask.png")
    return d


def cli(argv):
    p, sub = cli_parser("test")
    return run_cli(p, add_sd_commands(sub), argv)


def base(d, kind, out, ck="v1.safetensors"):
    return ["sd", kind, "--checkpoint", str(d / ck), "--tokenizer", str(d / "tok"), "--prompt", "a red cat", "--steps", "3",
            "--out", str(out)]


def test_each_command_writes_its_png(files, tmp_path, capsys):
    assert cli(base(files, "txt2img", tmp_path / "a.png") + ["--height", "32", "--width", "48"]) == 0
    assert Image.open(tmp_path / "a.png").size == (48, 32)
    assert cli(base(files, "img2img", tmp_path / "b.png") + ["--image", str(files / "in.png"), "--strength", "0.5"]) == 0
    assert cli(base(files, "inpaint", tmp_path / "c.png", "inp.ckpt") + ["--image", str(files / "in.png"), "--mask",
               str(files / "mask.png"), "--sampler", "dpmpp-2m"]) == 0
    assert cli(base(files, "inpaint", tmp_path / "d.png") + ["--image", str(files / "in.png"), "--mask", str(files / "mask.png")]) == 0
    kept = np.asarray(Image.open(tmp_path / "d.png"))[0]                       # the first row is kept: the input's pixels
    assert (kept == [200, 30, 30]).all()
    out = capsys.readouterr().out
    assert out.count("wrote 1 image") == 4 and "euler" not in out


@pytest.mark.parametrize("extra,kind,message", [
    (["--height", "40", "--width", "32"], "txt2img", "--height and --width must be multiples of 16"),
    (["--guidance-scale", "nan"], "txt2img", "--guidance-scale must be finite"),
    (["--steps", "0"], "txt2img", "--steps must be >= 1"),
    (["--n", "0"], "txt2img", "--n must be >= 1"),
    (["--version", "v2"], "txt2img", "holds a Stable Diffusion v1 model (clip text encoder), not v2"),
    (["--image", "nowhere.png"], "img2img", "--image 'nowhere.png' does not exist"),
    (["--image", "ODD"], "img2img", "odd.png' is 40x32 pixels: height and width must be multiples of 16 (the autoencoder's factor 4 times the UNet's 4), got height 32 and width 40"),
    (["--image", "IN", "--sampler", "euler"], "img2img", "img2img runs in DDIM: use --sampler ddim"),
    (["--image", "IN", "--strength", "1.5"], "img2img", "--strength must be <= 1"),
    (["--image", "IN", "--mask", "SMALL"], "inpaint", "--mask is 16x16 but --image is 32x32"),
    (["--image", "IN", "--mask", "MASK", "--sampler", "heun"], "inpaint", "inpainting with a 4-channel model blends latents in DDIM"),
])
def test_bad_input_one_line_exit_2_nothing_written(files, tmp_path, capsys, extra, kind, message):
    subst = {"ODD": str(files / "odd.png"), "IN": str(files / "in.png"), "SMALL": str(files / "small_mask.png"), "MASK": str(files / "mask.png")}
    out = tmp_path / "x.png"
    assert cli(base(files, kind, out) + [subst.get(a, a) for a in extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ldm-nb: error: ") and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["sd"], "the following arguments are required: SD_COMMAND"),
    (["sd", "txt2img", "--prompt", "x"], "the following arguments are required: --checkpoint, --tokenizer"),
    (["sd", "paint"], "invalid choice: 'paint'"),
])
def test_usage_errors_are_one_line(capsys, argv, message):
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_files_checked_before_the_checkpoint(files, tmp_path, capsys):
    "A missing tokenizer folder, a wrong --out suffix, a missing or foreign checkpoint: one line each, no PNG."
    cases = [(["--tokenizer", str(tmp_path / "none")], "does not exist: it needs vocab.json and merges.txt"),
             (["--out", str(tmp_path / "x.jpg")], "--out must be a .png file"),
             (["--checkpoint", str(tmp_path / "none.safetensors")], "does not exist")]
    for extra, message in cases:
        assert cli(base(files, "txt2img", tmp_path / "x.png") + extra + ["--height", "32", "--width", "32"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.count("\n") == 0, err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.jpg").exists()

"""Bad command lines, each subcommand of `ldm-nb`: exit status 2, one line `ldm-nb: error: ...` naming the flag, no
traceback, and a run folder that did not exist before does not exist after (an existing one is left byte for byte).
In this process through `ldm_nb.cli.main` (one torch import), on tiny runs made once for the module."""
import json, shutil
from pathlib import Path
import pytest
import torch
from conftest import TINY_DDPM, TINY_VAE, TINY_LDM, main, snapshot, assert_one_line_error

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A tiny DDPM, autoencoder and LDM run, config files and images for the cases."
    root = tmp_path_factory.mktemp("fuzz")
    assert main("train", "--run-dir", root / "ddpm", "--steps", 2, *TINY_DDPM) == 0
    assert main("train-vae", "--run-dir", root / "vae", "--steps", 2, *TINY_VAE) == 0
    assert main("train-ldm", "--first-stage", root / "vae", "--run-dir", root / "ldm", "--steps", 2, *TINY_LDM) == 0
    good = json.loads((root / "ddpm" / "config.json").read_text())
    for name, change in {"bool": {"ddpm": {**good["ddpm"], "use_ema": "no"}}, "str": {"steps": "4"}, "field": {"stpes": 4},
                         "nested": {"unet": {"chanels": 3}}}.items():
        (root / f"{name}.json").write_text(json.dumps({**good, "run_dir": str(root / "new"), **change}))
    (root / "broken.json").write_text("{")
    (root / "junk.safetensors").write_bytes(b"junk")
    (root / "folder").mkdir()
    from PIL import Image
    Image.new("L", (8, 8)).save(root / "init.png"); Image.new("L", (4, 4), 255).save(root / "small.png")
    (root / "not_an_image.png").write_text("x")
    return root

N = "{new}"          # a run folder that does not exist: it must not exist after the failed command either
CASES = [
    # --- train: the config, the data, the device, the checkpoint
    ("train", "--run-dir", N, *TINY_DDPM, "--steps", 0), "--steps must be >= 1, got 0",
    ("train", "--run-dir", N, *TINY_DDPM, "--steps", -3), "--steps must be >= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--lr", 0), "--lr must be > 0",
    ("train", "--run-dir", N, *TINY_DDPM, "--lr", "nan"), "--lr must be finite",
    ("train", "--run-dir", N, *TINY_DDPM, "--batch-size", 0), "--batch-size must be >= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--batch-size", 5000), "--batch-size 5000 is larger than the dataset (1797 images)",
    ("train", "--run-dir", N, *TINY_DDPM, "--seed", -1), "--seed must be >= 0",
    ("train", "--run-dir", N, *TINY_DDPM, "--grad-clip", -1), "--grad-clip must be >= 0",
    ("train", "--run-dir", N, *TINY_DDPM, "--log-every", 0), "--log-every must be >= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--dataset", "cifar", "--image-size", 32), "no such folder",
    ("train", "--run-dir", N, *TINY_DDPM, "--dataset", "cifar"), "--image-size is required for an image folder",
    ("train", "--run-dir", N, *TINY_DDPM, "--dataset", "{root}/folder", "--image-size", 8), "no images",
    ("train", "--run-dir", N, *TINY_DDPM, "--image-size", 9), "--image-size must be 8 + an even number",
    ("train", "--run-dir", N, *TINY_DDPM, "--channels", 3), "--channels must be 1 for dataset 'digits'",
    ("train", "--run-dir", N, *TINY_DDPM, "--channel-mult", "1,x"), "expected comma-separated ints",
    ("train", "--run-dir", N, *TINY_DDPM, "--model-channels", 0), "--model-channels must be >= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--timesteps", 0), "--timesteps must be >= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--linear-start", "nan"), "--linear-start must be finite",
    ("train", "--run-dir", N, *TINY_DDPM, "--linear-start", 0.5, "--linear-end", 0.1), "--linear-start must be <= linear_end",
    ("train", "--run-dir", N, *TINY_DDPM, "--beta-schedule", "bogus"), "schedule must be one of",
    ("train", "--run-dir", N, *TINY_DDPM, "--v-posterior", 2), "--v-posterior must be <= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--parameterization", "score"), "--parameterization must be one of",
    ("train", "--run-dir", N, *TINY_DDPM, "--ema-decay", 2), "--ema-decay must be <= 1",
    ("train", "--run-dir", N, *TINY_DDPM, "--device", "cuda"), "device 'cuda' is not available on this machine; available: cpu",
    ("train", "--run-dir", N, *TINY_DDPM, "--device", "mps"), "device 'mps' is not available on this machine",
    ("train", "--run-dir", N, *TINY_DDPM, "--device", "gpu0"), "--device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'",
    ("train", "--run-dir", N, "--stepz", 3), "unrecognized arguments: --stepz",
    ("train", "--run-dir", N, "--steps", "four"), "argument --steps: invalid int value: 'four'",
    ("train", "--config", "{root}/none.json"), "config file",
    ("train", "--config", "{root}/bool.json"), "config field ddpm.use_ema must be true or false, got 'no'",
    ("train", "--config", "{root}/str.json"), "steps must be an int, got str '4'",
    ("train", "--config", "{root}/field.json"), "unknown config field stpes",
    ("train", "--config", "{root}/nested.json"), "unknown config field unet.chanels",
    ("train", "--config", "{root}/broken.json"), "config is not valid JSON",
    ("train", "--run-dir", N, "--resume", *TINY_DDPM), "does not exist",
    ("train", "--run-dir", "{ddpm}", *TINY_DDPM, "--steps", 4), "already has a checkpoint",
    ("train", "--run-dir", "{ddpm}", "--steps", 4, "--model-channels", 32, "--resume"), "--model-channels is 16 in the checkpoint but 32",
    ("train", "--run-dir", "{vae}", "--steps", 4, "--resume", *TINY_DDPM), "it is an autoencoder checkpoint of ldm_nb.train_vae; use ldm-nb train-vae --resume",
    ("train", "--run-dir", "{ldm}", "--steps", 4, "--resume", *TINY_DDPM), "it is a latent diffusion checkpoint of `ldm-nb train-ldm`; use ldm-nb sample-ldm",
    # --- sample
    ("sample", "--run-dir", N), "does not exist",
    ("sample", "--checkpoint", "{root}/junk.safetensors"), "cannot read checkpoint",
    ("sample", "--checkpoint", "{root}/ddpm/config.json"), "checkpoint must be a .safetensors, .pt, .pth or .ckpt file",
    ("sample", "--run-dir", "{ddpm}", "--sampler", "plms"), "invalid choice: 'plms'",
    ("sample", "--run-dir", "{ddpm}", "--sampler", "ddim", "--sample-steps", 51), "--sample-steps must be <= 50, got 51",
    ("sample", "--run-dir", "{ddpm}", "--sampler", "ddim", "--steps", 0), "--sample-steps must be >= 1",
    ("sample", "--run-dir", "{ddpm}", "--sampler", "ddim", "--eta", -1), "--eta must be >= 0",
    ("sample", "--run-dir", "{ddpm}", "--sampler", "ddim", "--eta", "nan"), "--eta must be finite",
    ("sample", "--run-dir", "{ddpm}", "--n", 0), "--n must be >= 1",
    ("sample", "--run-dir", "{ddpm}", "--seed", -1), "--seed must be >= 0",
    ("sample", "--run-dir", "{ddpm}", "--out", "{root}/x.jpg"), "--out must be a .png file",
    ("sample", "--run-dir", "{ddpm}", "--device", "cuda"), "device 'cuda' is not available",
    ("sample", "--run-dir", "{vae}"), "it is an autoencoder checkpoint",
    ("sample", "--run-dir", "{ldm}"), "it is a latent diffusion checkpoint",
    ("sample", "--checkpoint", "{root}/junk.safetensors", "--config", "{root}/none.json"), "config file",
    ("sample",), "one of the arguments --run-dir --checkpoint is required",
    # --- train-vae
    ("train-vae", "--run-dir", N, *TINY_VAE, "--kl-weight", -1), "--kl-weight must be >= 0",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--disc-loss", "wgan"), "--disc-loss must be one of ['hinge', 'vanilla']",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--ch-mult", "1,2,2", "--image-size", 10), "--image-size 10 must be divisible by the autoencoder's downsampling factor f=4",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--disc-num-layers", 2), "--disc-num-layers=2 needs image_size >= 12",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--image-size", 16, "--perceptual-weight", 1, "--no-lpips-random-trunk"), "--perceptual-weight > 0 needs torchvision's ImageNet VGG16 trunk",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--ch-mult", "1,x"), "expected comma-separated ints",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--num-groups", 5), "num_groups",
    ("train-vae", "--run-dir", N, *TINY_VAE, "--device", "cuda"), "device 'cuda' is not available",
    ("train-vae", "--run-dir", "{ddpm}", "--steps", 4, "--resume", *TINY_VAE), "it is a DDPM checkpoint of `ldm-nb train`; use ldm-nb sample",
    ("train-vae", "--run-dir", "{vae}", "--steps", 4, "--resume", "--kl-weight", 0.1), "--kl-weight is 1e-06 in the checkpoint but 0.1 was requested",
    # --- train-ldm
    ("train-ldm", "--run-dir", N, *TINY_LDM), "--first-stage PATH is required",
    ("train-ldm", "--first-stage", "{root}/nope", "--run-dir", N, *TINY_LDM), "first stage",
    ("train-ldm", "--first-stage", "{ddpm}", "--run-dir", N, *TINY_LDM), "is neither a plain autoencoder file",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", N, *TINY_LDM, "--sample-steps", 51), "--sample-steps must be <= 50, got 51",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", N, *TINY_LDM, "--conditioning-key", "concat"), "expected crossattn, adm or none",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", N, *TINY_LDM, "--p-uncond", 2), "--p-uncond must be <= 1",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", N, *TINY_LDM, "--guidance-scale", "nan"), "--guidance-scale must be finite",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", N, *TINY_LDM, "--dataset", "cifar"), "--dataset must be one of ['digits', 'mnist']",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", N, *TINY_LDM, "--device", "cuda"), "device 'cuda' is not available",
    ("train-ldm", "--first-stage", "{vae}", "--run-dir", "{vae}", "--steps", 4, "--resume", *TINY_LDM), "it is an autoencoder checkpoint",
    # --- sample-ldm
    ("sample-ldm", "--run-dir", "{ldm}", "--class", 12), "--class must be in [0, 9] (the model has 10 classes), got 12",
    ("sample-ldm", "--run-dir", "{ldm}", "--class", "2,x"), "--class must be an int or a comma-separated list",
    ("sample-ldm", "--run-dir", "{ldm}", "--strength", 0.5), "--strength is for img2img: give --init-image too",
    ("sample-ldm", "--run-dir", "{ldm}", "--mask", "{root}/small.png"), "--mask is for inpainting: give --init-image too",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/init.png", "--strength", 0), "--strength must be > 0",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/init.png", "--strength", 1.5), "--strength must be <= 1",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/init.png"), "needs exactly one of --strength",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/none.png", "--strength", 0.5), "--init-image",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/not_an_image.png", "--strength", 0.5), "is not a readable image",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/init.png", "--mask", "{root}/small.png"), "--mask is 4x4 but --init-image is 8x8",
    ("sample-ldm", "--run-dir", "{ldm}", "--init-image", "{root}/init.png", "--strength", 0.5, "--sampler", "ddpm"), "use --sampler ddim",
    ("sample-ldm", "--run-dir", "{ldm}", "--guidance-scale", "nan"), "--guidance-scale must be finite",
    ("sample-ldm", "--run-dir", "{ldm}", "--guidance-scale", 1e30, "--n", 1, "--steps", 3), "--guidance-scale must lie in [-10000, 10000]",
    ("sample-ldm", "--run-dir", "{ldm}", "--guidance-scale", 1e39, "--n", 1, "--steps", 3), "--guidance-scale must lie in [-10000, 10000]",
    ("sample-ldm", "--run-dir", "{ldm}", "--sample-steps", 51), "--sample-steps must be <= 50",
    ("sample-ldm", "--run-dir", "{ldm}", "--n", 0), "--n must be >= 1",
    ("sample-ldm", "--run-dir", "{ldm}", "--eta", -1), "--eta must be >= 0",
    ("sample-ldm", "--run-dir", "{ldm}", "--device", "cuda"), "device 'cuda' is not available",
    ("sample-ldm", "--run-dir", "{ddpm}"), "it is a DDPM checkpoint",
    ("sample-ldm", "--checkpoint", "{root}/junk.safetensors"), "cannot read checkpoint",
    # --- the demos (bad input stops them before anything is trained)
    ("demo", "--run-dir", N, "--steps", 0), "--steps must be >= 1",
    ("demo", "--run-dir", N, "--n-eval", 1), "--n-eval must be >= 2",
    ("demo", "--run-dir", N, "--device", "cuda"), "device 'cuda' is not available",
    ("demo-ldm", "--run-dir", N, "--n-per-class", 5), "--n-per-class must be >= 10",
    ("demo-ldm", "--run-dir", N, "--guidance-scale", "nan"), "--guidance-scale must be finite",
    ("demo-ldm", "--run-dir", N, "--vae-steps", 0), "--vae-steps must be >= 1",
    ("demo-ldm", "--run-dir", N, "--device", "cuda"), "device 'cuda' is not available",
    # --- no command, an unknown one
    (), "the following arguments are required: COMMAND",
    ("trian",), "invalid choice: 'trian'",
]
CASES = list(zip(CASES[::2], CASES[1::2]))

@pytest.mark.parametrize("argv, contains", CASES, ids=[f"{i:03d}-{a[0] if a else 'none'}" for i, (a, _) in enumerate(CASES)])
def test_bad_command_line(runs, argv, contains, capsys, tmp_path):
    new = tmp_path / "new"
    subs = {"new": new, "root": runs, "ddpm": runs / "ddpm", "vae": runs / "vae", "ldm": runs / "ldm"}
    before = {k: snapshot(runs / k) for k in ("ddpm", "vae", "ldm")}
    rc = main(*[str(a).format(**subs) for a in argv])
    assert_one_line_error(rc, capsys.readouterr().err, contains)
    assert not new.exists(), "a failed start made its run folder"
    assert not (runs / "new").exists()
    for k, snap in before.items(): assert snapshot(runs / k) == snap, f"the {k} run was changed"

def test_enough_cases():
    assert len(CASES) >= 60
    assert {a[0] for a, _ in CASES if a} >= {"train", "sample", "train-vae", "train-ldm", "sample-ldm", "demo", "demo-ldm"}

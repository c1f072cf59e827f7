"""Stable Diffusion (chapters 17e-17g) beside the notebooks: the original key list, the counts at full size, detection,
round trips, parity with diffusers' converters, and no per-step device reads in the pipelines. CPU, seconds."""
import math, warnings
from pathlib import Path
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ldm_nb.sd import (StableDiffusion, sd_v1_config, sd_v2_config, tiny_sd_config, load_tokenizer, write_tiny_tokenizer,
                       clip_config)
from ldm_nb.sd_checkpoint import (detect_sd_config, to_original, save_stable_diffusion, load_stable_diffusion,
                                  read_sd_checkpoint, CheckpointError)
from ldm_nb.sd_pipelines import txt2img, img2img, inpaint

FIX = Path(__file__).parent / "fixtures" / "sd" / "v1_keys.txt"


def fixture_keys():
    return [(k, tuple(int(s) for s in shape.split(",") if s)) for k, shape in (l.split() for l in FIX.read_text().splitlines())]


def randomize_(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=torch.float64)
            p.copy_((1 + 0.1 * z) if p.ndim == 1 and n.endswith("weight") else 0.1 * z if p.ndim <= 1 else z / math.sqrt(p[0].numel()))
    return m


def test_v1_key_for_key():
    "Every name and shape of the original v1 file (the fixture, derived from CompVis's constructors), in order."
    m = StableDiffusion(sd_v1_config(), meta=True)
    assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == fixture_keys()


def test_counts_at_full_size():
    m = StableDiffusion(sd_v1_config(), meta=True)
    assert sum(p.numel() for p in m.unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in m.first_stage_model.parameters()) == 83_653_863
    assert sum(p.numel() for p in StableDiffusion(sd_v2_config(), meta=True).unet.parameters()) == 865_910_724


def test_fixture_detected_and_converted_by_diffusers():
    "The fixture describes sd_v1_config(), and diffusers' converter turns it into diffusers' own UNet's names and shapes."
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm
    sd = {k: torch.empty(s, device="meta") for k, s in fixture_keys()}
    assert detect_sd_config(sd) == sd_v1_config()
    u = sd_v1_config().unet
    oc = {"model": {"params": {"unet_config": {"params": dict(
        in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1], num_res_blocks=2, channel_mult=[1, 2, 4, 4],
        num_heads=8, use_spatial_transformer=True, transformer_depth=1, context_dim=768, legacy=False)},
        "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uc = create_unet_diffusers_config_from_ldm(oc, sd, image_size=512)
        with torch.device("meta"): d = UNet2DConditionModel(**uc)
    conv = convert_ldm_unet_checkpoint(sd, uc)
    assert {k: tuple(v.shape) for k, v in conv.items()} == {k: tuple(v.shape) for k, v in d.state_dict().items()}
    assert u.num_heads == uc["attention_head_dim"] == 8


@pytest.mark.parametrize("version,inpainting", [("v1", False), ("v2", False), ("v1", True), ("v2", True)])
def test_round_trip_bit_for_bit(tmp_path, version, inpainting):
    m = randomize_(StableDiffusion(tiny_sd_config(version, inpainting)), seed=1)
    for suffix in (".safetensors", ".ckpt"):
        m2 = load_stable_diffusion(save_stable_diffusion(m, tmp_path / f"m{suffix}"))
        assert m2.sd_config == detect_sd_config(to_original(m), image_size=m2.sd_config.image_size)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


def test_bad_files(tmp_path):
    m = StableDiffusion(tiny_sd_config())
    f = save_stable_diffusion(m, tmp_path / "m.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(f.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"): read_sd_checkpoint(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="does not fit the Stable Diffusion v2 model given: 2 missing"):
        load_stable_diffusion(f, config=tiny_sd_config("v2"))
    with pytest.raises(ValueError, match="path must end in .safetensors or .ckpt"): save_stable_diffusion(m, tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_unet_parity_with_diffusers():
    "The tiny v2 UNet through diffusers' converter: the same output to float32 rounding."
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm
    m = randomize_(StableDiffusion(tiny_sd_config("v2")), seed=2)
    u = m.sd_config.unet
    oc = {"model": {"params": {"unet_config": {"params": dict(
        in_channels=4, out_channels=4, model_channels=u.model_channels, attention_resolutions=list(u.attention_resolutions),
        num_res_blocks=u.num_res_blocks, channel_mult=list(u.channel_mult), num_head_channels=64, use_linear_in_transformer=True,
        use_spatial_transformer=True, transformer_depth=1, context_dim=u.context_dim, legacy=False)},
        "first_stage_config": {"params": {"ddconfig": {"ch_mult": list(m.sd_config.vae.ch_mult)}}}}}}
    orig = to_original(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uc = create_unet_diffusers_config_from_ldm(oc, orig, image_size=32)
    d = UNet2DConditionModel(**uc)
    d.load_state_dict(convert_ldm_unet_checkpoint(orig, uc), strict=True)
    g = torch.Generator().manual_seed(0)
    x, t, c = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([3, 700]), torch.randn(2, 77, 64, generator=g)
    with torch.no_grad(): a, b = m.unet(x, t, context=c), d(x, t, encoder_hidden_states=c).sample
    assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5


class ScalarReads(TorchDispatchMode):
    "Count the tensor -> Python number conversions (`aten._local_scalar_dense`) made inside the block."
    def __init__(self):
        super().__init__(); self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default: self.n += 1
        return func(*args, **(kwargs or {}))


def reads(fn) -> int:
    with torch.no_grad(), ScalarReads() as c: fn()
    return c.n


def test_pipelines_read_nothing_per_step(tmp_path):
    "txt2img, img2img and both inpaintings read the same few values for 2 steps as for 6: none per step."
    tok = load_tokenizer(write_tiny_tokenizer(tmp_path / "tok"))
    m, m9 = StableDiffusion(tiny_sd_config()), StableDiffusion(tiny_sd_config(inpainting=True))
    img, keep = torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    keep[..., :16] = 0
    runs = {"txt2img": lambda S: txt2img(m, tok, "a cat", height=32, width=32, sample_steps=S),
            "img2img": lambda S: img2img(m, tok, img, "a cat", strength=1., sample_steps=S),
            "inpaint (4)": lambda S: inpaint(m, tok, img, keep, "a cat", sample_steps=S),
            "inpaint (9)": lambda S: inpaint(m9, tok, img, keep, "a cat", sample_steps=S)}
    for name, run in runs.items():
        assert reads(lambda: run(2)) == reads(lambda: run(6)), name


def test_fixture_is_what_make_keys_writes():
    "v1_keys.txt is exactly the output of make_keys.py (CompVis's constructors walked in plain Python)."
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_keys", FIX.with_name("make_keys.py"))
    mk = importlib.util.module_from_spec(spec); spec.loader.exec_module(mk)
    rows = [f"{k} {','.join(map(str, s))}" for k, s in mk.unet() + mk.vae() + mk.text()]
    assert FIX.read_text().splitlines() == rows

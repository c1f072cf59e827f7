"""The UNets compute what they computed before the speed work of issue 11, and keep their parameter names and shapes.

tests/fixtures/unet/outputs_v1.safetensors was written by tests/fixtures/unet/make_outputs.py at commit 12949ea
(attention still through `rearrange` + 1x1 `Conv1d`, SDPA on strided q/k/v). Three models:
  a. "unconditional": the benchmark's UNetModel (32 ch, (1, 2, 2), 2 res blocks, attention at rate 2, 4 heads), 3x32x32;
  b. "conditional": the benchmark's ConditionalUNet (SpatialTransformers with cross-attention at rates 1, 2, 4,
     context_dim 64, additive time embedding), 4x16x16 latents, 16 context tokens;
  c. "default_classes": UNetConfig() (MNIST) with num_classes=10, 1x28x28 and labels.
Each is rebuilt here from its config, then every parameter is overwritten by `randomize_` (a generator of its own,
so the values depend on nothing but torch.randn; the zero-initialized convs would otherwise hide the attention and
the residual branches: an untrained UNet outputs exactly 0). Batch 2.

Tolerances, relative to the largest |output| (or |gradient|) of the model, `scale`:
* float64 outputs: 1e-10. Any reordering of float64 sums moves a result by ~1e-16 relative per operation, ~1e-14 after
  the ~100 layers; 1e-10 leaves room for that and nothing else (a real change of the math is O(1)).
* float32 outputs and input gradients: 2e-5. The fixture records how far the float32 output is from the float64 one
  (`keys_v1.json` -> meta: 7e-7 to 1.3e-6 of the scale); a different but equally good order of the float32 sums (a
  fused kernel instead of bmm + softmax, a matmul instead of a 1x1 conv) can move the result by about as much again,
  so 2e-5 is ten times the float32 rounding that is there today, and 1e5 times below a real change.
`test_the_check_sees_the_channel_order` shows these tolerances catch a wrong attention channel order (q, k, v read
as (three, heads, d) instead of CompVis's (heads, three, d); heads read as (d, heads) in cross-attention), and that
a relabelling of heads (a true symmetry) passes.
"""
import json, math
from pathlib import Path
import pytest
import torch
from torch import nn

FIX = Path(__file__).parent / "fixtures" / "unet"
MODELS = ("unconditional", "conditional", "default_classes")
TOL64, TOL32 = 1e-10, 2e-5


def build(name: str) -> nn.Module:
    "Model `name` in float32, every parameter randomized."
    from ldm_nb.unet import UNetModel, UNetConfig
    from ldm_nb.attention import ConditionalUNet, ConditionalUNetConfig
    torch.manual_seed(0)
    if name == "unconditional":
        m = UNetModel(UNetConfig(image_size=32, in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2, 2),
                                 num_res_blocks=2, attention_resolutions=(2,), num_heads=4))
    elif name == "conditional":
        m = ConditionalUNet(ConditionalUNetConfig(image_size=16, in_channels=4, out_channels=4, model_channels=32,
                                                  channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_resolutions=(1, 2, 4),
                                                  num_heads=4, context_dim=64, transformer_depth=1, use_scale_shift_norm=False))
    else:
        m = UNetModel(UNetConfig(num_classes=10))
    return randomize_(m, seed=MODELS.index(name))


def randomize_(m: nn.Module, seed: int) -> nn.Module:
    "Norm weights 1 + 0.1 z, biases 0.1 z, weights z / sqrt(fan_in): a 'trained' model whose activations stay O(1)."
    g = torch.Generator().manual_seed(seed)
    norm = {id(p) for mod in m.modules() if isinstance(mod, (nn.GroupNorm, nn.LayerNorm)) for p in mod.parameters()}
    with torch.no_grad():
        for n, p in m.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=torch.float64)
            v = 1 + 0.1 * z if id(p) in norm and n.endswith("weight") else 0.1 * z if p.ndim == 1 else z / math.sqrt(p[0].numel())
            p.copy_(v)
    return m


def inputs(name: str):
    "The model's keyword inputs (float32) and the fixed tensor r of the loss (out * r).sum()."
    g = torch.Generator().manual_seed(100 + MODELS.index(name))
    C, S, out = {"unconditional": (3, 32, 3), "conditional": (4, 16, 4), "default_classes": (1, 28, 1)}[name]
    kw = dict(x=torch.randn(2, C, S, S, generator=g), timesteps=torch.tensor([17, 803]))
    if name == "conditional": kw["context"] = torch.randn(2, 16, 64, generator=g)
    if name == "default_classes": kw["y"] = torch.tensor([3, 7])
    return kw, torch.randn(2, out, S, S, generator=g)


def run(m: nn.Module, kw: dict, r: torch.Tensor, grad: bool = True):
    "The output in m's dtype, and (if grad) d (out * r).sum() / dx."
    dt = next(m.parameters()).dtype
    kw = {k: v.to(dt) if v.is_floating_point() else v for k, v in kw.items()}
    x = kw.pop("x").detach().clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        out = m(x, **kw)
        g = torch.autograd.grad((out * r.to(dt)).sum(), x)[0] if grad else None
    return out.detach(), g


@pytest.fixture(autouse=True)
def one_thread():
    "One torch thread inside each test (the fixture was written so), the caller's count restored after."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def saved():
    from safetensors.torch import load_file
    return load_file(str(FIX / "outputs_v1.safetensors")), json.loads((FIX / "keys_v1.json").read_text())


def rel_err(a, b) -> float: return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def check_against(saved, name, m):
    "Relative errors {out32, grad32, out64} of model m (float32, modified in place to float64 at the end)."
    t, _ = saved
    kw = {k.split(".")[-1]: v for k, v in t.items() if k.startswith(f"{name}.in.")}
    out32, grad32 = run(m, kw, t[f"{name}.r"])
    out64, _ = run(m.double(), kw, t[f"{name}.r"], grad=False)
    return {"out32": rel_err(out32, t[f"{name}.out32"]), "grad32": rel_err(grad32, t[f"{name}.grad32"]),
            "out64": rel_err(out64, t[f"{name}.out64"])}


@pytest.mark.parametrize("name", MODELS)
def test_same_keys_and_shapes(saved, name):
    "state_dict keys, their order and shapes are what they were (CompVis / SD checkpoints keep loading)."
    _, k = saved
    got = [[key, list(v.shape)] for key, v in build(name).state_dict().items()]
    assert got == k["keys"][name]


@pytest.mark.parametrize("name", MODELS)
def test_same_outputs(saved, name):
    "Outputs (float32 and float64) and input gradients (float32) as saved, to the tolerances of the module docstring."
    e = check_against(saved, name, build(name))
    assert e["out64"] < TOL64 and e["out32"] < TOL32 and e["grad32"] < TOL32, e


def _permute_rows_(w: torch.Tensor, shape, perm) -> None:
    "Reorder the output rows of a weight (or bias) viewed as `shape` + rest by `perm` of those axes, in place."
    w.copy_(w.reshape(*shape, *w.shape[1:]).permute(*perm, *range(len(shape), len(shape) + w.ndim - 1)).reshape(w.shape))


def test_the_check_sees_the_channel_order(saved):
    """A model whose attention reads its channels in another order fails `test_same_outputs`; a symmetry passes.

    Reading qkv's 3C channels as (three, heads, d) instead of (heads, three, d) gives, with weights W, what the right
    code gives with W's rows reordered; so reorder them and expect a mismatch far above the tolerance. Likewise for
    cross-attention's to_q/to_k/to_v read as (d, heads). Relabelling the heads (the same permutation of heads in qkv's
    rows and proj_out's columns) changes no output: that one must pass."""
    from ldm_nb.unet import AttentionBlock
    from ldm_nb.attention import CrossAttention
    m = build("unconditional")
    with torch.no_grad():
        for blk in (b for b in m.modules() if isinstance(b, AttentionBlock)):
            h, d = blk.num_heads, blk.channels // blk.num_heads
            for p in (blk.qkv.weight, blk.qkv.bias): _permute_rows_(p, (3, h, d), (1, 0, 2))
    e = check_against(saved, "unconditional", m)
    assert e["out32"] > 1e3 * TOL32 and e["out64"] > 1e3 * TOL32, e

    m = build("conditional")
    with torch.no_grad():
        for ca in (c for c in m.modules() if isinstance(c, CrossAttention)):
            for lin in (ca.to_q, ca.to_k, ca.to_v): _permute_rows_(lin.weight, (ca.dim_head, ca.heads), (1, 0))
    e = check_against(saved, "conditional", m)
    assert e["out32"] > 1e3 * TOL32, e

    m = build("unconditional")                                   # the symmetry: heads relabelled everywhere
    with torch.no_grad():
        for blk in (b for b in m.modules() if isinstance(b, AttentionBlock)):
            h, d = blk.num_heads, blk.channels // blk.num_heads
            perm = torch.arange(h).roll(1)
            for p in (blk.qkv.weight, blk.qkv.bias): p.copy_(p.reshape(h, -1, *p.shape[1:])[perm].reshape(p.shape))
            w = blk.proj_out.weight                               # (C, C, 1): its input channels are (heads, d)
            w.copy_(w.reshape(w.shape[0], h, d, 1)[:, perm].reshape(w.shape))
    e = check_against(saved, "unconditional", m)
    assert e["out64"] < TOL64 and e["out32"] < TOL32, e

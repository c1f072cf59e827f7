"""The sampling hot path reads no tensor value: no `.item()`, `int()`, `float()` or `bool()` of a tensor per step.

Each such read is the op `aten._local_scalar_dense`, and on a GPU each one makes the CPU wait for the device.
A `TorchDispatchMode` sees every op torch runs, so it counts them. Measured before the loops were restructured:
18 reads per DDPM `p_sample` step (1,800 in a 100-step loop), 11 per DDIM step, 0 per UNet forward. Now the loops
check their arguments once, build `t` from Python ints, and read nothing at all. CPU, tiny models: seconds.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ldm_nb.unet import UNetModel, UNetConfig
from ldm_nb.ddpm import DDPM, DDPMConfig, PARAMETERIZATIONS
from ldm_nb.ddim import DDIMSampler
from ldm_nb.solvers import ODESampler, SOLVERS, SPACINGS
from ldm_nb.schedules import NoiseSchedule
from ldm_nb.forward import q_sample


class ScalarReads(TorchDispatchMode):
    "Count the tensor -> Python number conversions (`aten._local_scalar_dense`) made inside the block."
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default: self.n += 1
        return func(*args, **(kwargs or {}))


def reads(fn) -> int:
    "How many scalar reads `fn()` makes (under no_grad, as sampling runs)."
    with torch.no_grad(), ScalarReads() as c: fn()
    return c.n


X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNetModel(UNetConfig(image_size=8, model_channels=8, channel_mult=(1, 2), attention_resolutions=(2,), num_heads=2))


def ddpm(net, T=20, **kw) -> DDPM:
    return DDPM(net, DDPMConfig(timesteps=T, use_ema=False, **kw))


def test_counter_sees_reads():
    "The counter is not blind: each kind of read counts once, and the public `p_sample` (which checks `t`) reads."
    t = torch.tensor([3, 1])
    assert reads(lambda: (int(t.max()), t.float().mean().item(), bool((t > 0).all()))) == 3
    assert reads(lambda: ddpm(UNetModel(model_channels=8)).p_sample(torch.randn(2, 1, 28, 28), t)) > 0


def test_unet_forward(net):
    assert reads(lambda: net(X, torch.tensor([1, 19]))) == 0
    adm = UNetModel(UNetConfig(image_size=8, model_channels=8, channel_mult=(1, 2), attention_resolutions=(), adm_in_channels=3))
    assert reads(lambda: adm(X, torch.tensor([1., 2.5]), y=torch.randn(2, 3))) == 0


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_loop(net, parameterization, clip):
    "Zero reads in a whole `p_sample_loop` (its checks included), for 2 and 10 steps alike."
    counts = [reads(lambda: ddpm(net, T, parameterization=parameterization).p_sample_loop(
                  X.shape, generator=torch.Generator().manual_seed(0), clip_denoised=clip, progress=False))
              for T in (2, 10)]
    assert counts == [0, 0]


def test_ddpm_sample_and_intermediates(net):
    d = DDPM(net, DDPMConfig(timesteps=10, ema_decay=0.9))                   # with EMA: sample swaps the weights in
    assert reads(lambda: d.sample(2, (1, 8, 8), progress=False)) == 0
    assert reads(lambda: d.p_sample_loop(X.shape, x_T=X, return_intermediates=True, log_every_t=3, progress=False)) == 0


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
@pytest.mark.parametrize("eta", [0., 0.5, 1.])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_sample(net, parameterization, eta, clip):
    "Zero reads in a whole DDIM `sample`, S = 2 and S = 10, deterministic or not."
    smp = DDIMSampler(ddpm(net, parameterization=parameterization))
    counts = [reads(lambda: smp.sample(X.shape, sample_steps=S, eta=eta, clip_denoised=clip, return_intermediates=True,
                                       generator=torch.Generator().manual_seed(0), progress=False))
              for S in (2, 10)]
    assert counts == [0, 0]


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_ddim_invert(net, parameterization):
    smp = DDIMSampler(ddpm(net, parameterization=parameterization))
    assert [reads(lambda: smp.invert(X, sample_steps=S, progress=False)) for S in (2, 10)] == [0, 0]


def test_ddim_step_and_model_fn(net):
    "The public `step` (diffusers' API) and a sampler with its own `model_fn` (as guidance uses) read nothing either."
    d = ddpm(net)
    smp = DDIMSampler(d, model_fn=lambda x, t, **c: 0.5 * d.apply_model(x, t, **c)).set_timesteps(5, eta=1.)
    t = torch.full((2,), int(smp.timesteps[0]))
    assert reads(lambda: smp.step(d.apply_model(X, t), 0, X)) == 0
    assert reads(lambda: smp.sample(X.shape, sample_steps=5, eta=1., progress=False)) == 0


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
@pytest.mark.parametrize("spacing", SPACINGS)
def test_ode_sample(net, solver, parameterization, spacing):
    """Zero reads in a whole `ODESampler.sample` (chapter 07b: its `set_timesteps` included), for 3 and 10 steps, every
    solver, parameterization and spacing (integer model times on `uniform`, real ones on the others)."""
    smp = ODESampler(ddpm(net, parameterization=parameterization), solver=solver)
    counts = [reads(lambda: smp.sample(X.shape, S, spacing=spacing, clip_denoised=True, return_intermediates=True,
                                       generator=torch.Generator().manual_seed(0), progress=False))
              for S in (3, 10)]
    assert counts == [0, 0]


def test_ode_step_and_sigmas(net):
    "The public `step` (in order, with its multistep history) and a run on given levels read nothing either."
    d = ddpm(net)
    smp = ODESampler(d, lambda x, t, **c: 0.5 * d.apply_model(x, t, **c), "heun").set_timesteps(4)
    x = X
    for i, ti in enumerate(smp.timesteps):
        with torch.no_grad(): out = d.apply_model(x, torch.full((2,), ti))
        with torch.no_grad(), ScalarReads() as c: x, _ = smp.step(out, i, x)
        assert c.n == 0
    levels = list(smp.table[[19, 10, 3, 0]]) + [0.]
    assert reads(lambda: ODESampler(d, solver="dpmpp-2m").sample(X.shape, sigmas=levels, progress=False)) == 0


def test_public_functions_still_check_t(net):
    "`extract` no longer checks `t`; every public function that takes `t` from a user still does."
    d, bad = ddpm(net, T=20), torch.tensor([0, 20])
    for fn in (lambda: q_sample(NoiseSchedule("linear", 20), X, bad), lambda: d.p_losses(X, bad),
               lambda: d(X, t=bad), lambda: d.p_sample(X, bad), lambda: d.p_mean_variance(X, bad)):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 20\)"): fn()
    with pytest.raises(TypeError, match="t must be an integer tensor"): d.p_sample(X, torch.tensor([1., 2.]))


# --- Conditioned and guided sampling (chapters 10-12) --------------------------------------------------------------
# Measured before these loops were restructured (S = 2 -> S = 10): a class-conditional UNet read its labels' range at
# every forward (4 -> 20 in DDIM, guided or not); img2img 9 -> 24 and inpainting 13 -> 61 (int(timesteps[i]) and a
# checked q_sample per step); LDM inpainting through edit_images 15 -> 47. Now a run reads its inputs' values once.

from ldm_nb.attention import ConditionalUNet, ConditionalUNetConfig, DiffusionWrapper
from ldm_nb.guidance import (classifier_free_model_fn, classifier_guided_model_fn, ddim_img2img, ddim_inpaint,
                             NoisyClassifier, NoisyClassifierConfig)
from ldm_nb.autoencoder import AutoencoderKL, AutoencoderConfig
from ldm_nb.ldm import LatentDiffusion, LDMConfig, class_grid, edit_images, sample_ldm

SMALL = dict(image_size=8, model_channels=8, channel_mult=(1, 2), attention_resolutions=(2,), num_heads=2)
MASK = torch.ones(1, 1, 8, 8); MASK[..., 4:, :] = 0


def steps_reads(run) -> list:
    "Reads of `run(S)` for S = 2 and S = 10 steps."
    return [reads(lambda: run(S)) for S in (2, 10)]


@pytest.fixture(scope="module")
def cls_net():
    torch.manual_seed(0)
    return UNetModel(UNetConfig(**SMALL, num_classes=11))


def labels():
    "A fresh labels tensor (the UNet reads each tensor's range once)."
    return torch.tensor([3, 10])


def test_class_unet_reads_labels_once(cls_net):
    "A class-conditional UNet reads y's range (2 reads) at the first forward of a run, never again; every loop alike."
    d = ddpm(cls_net)
    def guided(dm): return classifier_free_model_fn(dm.apply_model, {"y": labels()}, {"y": torch.tensor([10])}, 3.)
    def guided_ddpm(S): dS = ddpm(cls_net, S); return dS.p_sample_loop(X.shape, progress=False, model_fn=guided(dS))
    runs = {"ddpm": lambda S: ddpm(cls_net, S).p_sample_loop(X.shape, progress=False, y=labels()),
            "ddim": lambda S: DDIMSampler(d).sample(X.shape, S, eta=1., progress=False, y=labels()),
            "invert": lambda S: DDIMSampler(d).invert(X, S, progress=False, y=labels()),
            "cfg ddim": lambda S: DDIMSampler(d, guided(d)).sample(X.shape, S, progress=False),
            "cfg dpmpp-2m": lambda S: ODESampler(d, guided(d), "dpmpp-2m").sample(X.shape, S + 1, progress=False),
            "heun": lambda S: ODESampler(d, solver="heun").sample(X.shape, S, progress=False, y=labels()),
            "cfg ddpm": guided_ddpm}
    assert {k: steps_reads(r) for k, r in runs.items()} == {k: [2, 2] for k in runs}


def test_class_unet_still_checks_labels(cls_net):
    "The public forward still refuses bad labels: a new tensor, or one written in place after it was read."
    t, y = torch.tensor([1, 2]), torch.tensor([0, 5])
    with torch.no_grad():
        assert reads(lambda: cls_net(X, t, y=y)) == 2
        assert reads(lambda: cls_net(X, t, y=y)) == 0
        y[1] = 11
        with pytest.raises(ValueError, match=r"y must lie in \[0, 11\), got values in \[0, 11\]"): cls_net(X, t, y=y)
        with pytest.raises(ValueError, match=r"y must lie in \[0, 11\)"): cls_net(X, t, y=torch.tensor([-1, 0]))


def test_conditional_unet():
    "A ConditionalUNet on a context (as LatentDiffusion's) reads nothing, directly or through the wrapper."
    torch.manual_seed(0)
    w = DiffusionWrapper(ConditionalUNet(ConditionalUNetConfig(**SMALL, context_dim=6)), "crossattn")
    ctx, d = torch.randn(2, 3, 6), ddpm(w)
    assert reads(lambda: w.diffusion_model(X, torch.tensor([1, 2]), context=ctx)) == 0
    assert steps_reads(lambda S: DDIMSampler(d).sample(X.shape, S, progress=False, c_crossattn=ctx)) == [0, 0]
    cf = classifier_free_model_fn(d.apply_model, {"c_crossattn": ctx}, {"c_crossattn": torch.zeros(1, 3, 6)}, 2.)
    assert steps_reads(lambda S: ddim_inpaint(DDIMSampler(d, cf), X, MASK, S, progress=False)) == [1, 1]   # the mask's 0/1 check


@pytest.mark.parametrize("eta", [0., 1.])
def test_img2img_inpaint(net, cls_net, eta):
    "img2img reads nothing; inpainting reads once that the mask holds 0 and 1; with labels, 2 more (their range)."
    d, dc = ddpm(net), ddpm(cls_net)
    assert steps_reads(lambda S: ddim_img2img(DDIMSampler(d), X, 0.7, S, eta, progress=False)) == [0, 0]
    assert steps_reads(lambda S: ddim_inpaint(DDIMSampler(d), X, MASK, S, eta, progress=False)) == [1, 1]
    assert steps_reads(lambda S: ddim_img2img(DDIMSampler(dc), X, 0.7, S, eta, progress=False, y=labels())) == [2, 2]
    assert steps_reads(lambda S: ddim_inpaint(DDIMSampler(dc), X, MASK, S, eta, progress=False, y=labels())) == [3, 3]


def test_classifier_guidance(net):
    "Classifier guidance reads nothing per step either (the classifier's gradient needs no value on the host)."
    torch.manual_seed(0)
    d, clf = ddpm(net), NoisyClassifier(NoisyClassifierConfig(channels=8))
    fn = classifier_guided_model_fn(d.apply_model, clf, torch.tensor([1, 2]), 2., d.schedule)
    assert steps_reads(lambda S: DDIMSampler(d, fn).sample(X.shape, S, progress=False)) == [0, 0]
    assert steps_reads(lambda S: ODESampler(d, fn, "heun").sample(X.shape, S, spacing="uniform", progress=False)) == [0, 0]


def tiny_ldm(key="crossattn", T=20) -> LatentDiffusion:
    torch.manual_seed(0)
    ae = AutoencoderKL(AutoencoderConfig(resolution=8, ch=8, ch_mult=(1, 2), z_channels=2, embed_dim=2, num_groups=4))
    u = ConditionalUNetConfig(image_size=4, in_channels=2, out_channels=2, model_channels=16, channel_mult=(1,), attention_resolutions=(1,),
                              num_heads=1, context_dim=8 if key == "crossattn" else None, adm_in_channels=8 if key == "adm" else None)
    return LatentDiffusion(ae, ConditionalUNet(u), LDMConfig(timesteps=T, conditioning_key=key, num_classes=3 if key else None,
                                                             cond_embed_dim=8, ema_decay=0.9))


@pytest.fixture(scope="module")
def ldm():
    return tiny_ldm()


def test_ldm_sampling(ldm):
    """Every LDM sampling path reads a few values once, never per step: the labels' range (2), the null labels' (2, with
    guidance), that the scale factor is set (1 per encode / decode), the mask's 0/1 check (1)."""
    lab, init = torch.tensor([0, 2]), X[:1].clamp(-1, 1)
    pm = torch.ones(1, 1, 8, 8); pm[..., :4, :] = 0
    runs = {"ddim": (lambda S: ldm.sample_images(lab, "ddim", S), 3),
            "ddim cfg": (lambda S: ldm.sample_images(lab, "ddim", S, eta=1., guidance_scale=3.), 5),
            "dpmpp-2m": (lambda S: ldm.sample_images(lab, "dpmpp-2m", S + 1), 3),
            "heun cfg": (lambda S: ldm.sample_images(lab, "heun", S, guidance_scale=3.), 5),
            "euler, sample_ldm": (lambda S: sample_ldm(ldm, [0, 1], 1, "euler", S), 5),
            "ddpm": (lambda S: tiny_ldm(T=S).sample_images(lab, "ddpm"), 3),
            "ddpm cfg": (lambda S: tiny_ldm(T=S).sample_images(lab, "ddpm", guidance_scale=3.), 5),
            "adm cfg": (lambda S: tiny_ldm("adm").sample_images(lab, "ddim", S, guidance_scale=3.), 5),
            "unconditional": (lambda S: tiny_ldm(None).sample_images(2, "ddim", S), 1),
            "class_grid": (lambda S: class_grid(ldm, 1, [0, 2], sample_steps=S), 5),
            "class_grid ddpm": (lambda S: class_grid(tiny_ldm(T=S), 1, [0, 2], sampler="ddpm"), 5),
            "img2img": (lambda S: edit_images(ldm, init, lab, strength=0.6, sample_steps=S), 4),
            "img2img cfg": (lambda S: edit_images(ldm, init, lab, strength=0.6, sample_steps=S, guidance_scale=3.), 6),
            "inpaint cfg": (lambda S: edit_images(ldm, init, lab, mask=pm, sample_steps=S, guidance_scale=2.), 7),
            "sample_ldm": (lambda S: sample_ldm(ldm, [0, 1], 1, sample_steps=S), 5),
            "sample_ldm inpaint": (lambda S: sample_ldm(ldm, [0, 1], 1, sample_steps=S, init_image=init, mask=pm), 7)}
    assert {k: steps_reads(r) for k, (r, _) in runs.items()} == {k: [n, n] for k, (_, n) in runs.items()}

"""Bad arguments at every public entry point of chapters 01-14: each must raise a ValueError or TypeError whose message
names the argument (no error from deep inside torch or Python, no silent NaN, nothing silently accepted).

One table, `CASES`: (id, call, expected exception type, a substring of the expected message). `NAN_CASES`: calls that
are legal or borderline and must either raise a clear error or return something finite. Tiny models, CPU, seconds.

Script mode classifies every outcome, for the counts of a report:
    OMP_NUM_THREADS=1 .venv/bin/python tests/test_fuzz_api.py [-v]
clear: the expected type and substring; odd-type: the substring under another exception type; unclear: any other
exception (from inside torch or Python, or not naming the argument); nan: a NaN/inf output; accepted: no error at all.
"""
from __future__ import annotations
import math, sys, warnings
from functools import lru_cache
from types import SimpleNamespace
import numpy as np
import pytest
import torch
from torch import nn

from ldm_nb.schedules import NoiseSchedule, make_beta_schedule
from ldm_nb.forward import q_sample, q_mean_variance, extract_like, check_diffusion_args
from ldm_nb.posterior import (q_posterior_mean_variance, predict_start_from_noise, predict_noise_from_start, get_v,
                              predict_start_from_v, predict_noise_from_v)
from ldm_nb.elbo import normal_kl, approx_standard_normal_cdf, discretized_gaussian_log_likelihood, mean_flat, bits_per_dim, lvlb_weights
from ldm_nb.unet import (UNetConfig, UNetModel, timestep_embedding, norm_groups, normalization, zero_module, count_params,
                         ResBlock, AttentionBlock, Downsample, Upsample)
from ldm_nb.ddpm import DDPM, DDPMConfig, EMA, OracleModel
from ldm_nb.ddim import DDIMSampler, ddim_timesteps, ddim_sigmas
from ldm_nb.autoencoder import (AutoencoderConfig, AutoencoderKL, DiagonalGaussianDistribution, Normalize, pad_to)
from ldm_nb.losses import (ActNorm, NLayerDiscriminator, hinge_d_loss, vanilla_d_loss, generator_loss, adopt_weight,
                           nll_with_logvar, calculate_adaptive_weight, LPIPSWithDiscriminator, trunk_weights_path, env_flag)
from ldm_nb.attention import (CrossAttention, GEGLU, FeedForward, BasicTransformerBlock, SpatialTransformer,
                              ConditionalUNetConfig, ConditionalUNet, DiffusionWrapper)
from ldm_nb.guidance import (drop_labels, drop_conditions, guidance_combine, guidance_combine_w, classifier_free_model_fn,
                             NoisyClassifierConfig, NoisyClassifier, noisy_classifier_loss, classifier_log_prob_grad,
                             classifier_guided_model_fn, img2img_steps, ddim_img2img, check_mask, ddim_inpaint)
from ldm_nb.ldm import (ClassEmbedder, LDMConfig, LatentDiffusion, guided_model_fn, class_grid, latent_mask, edit_images,
                        sample_ldm)
from ldm_nb.data import (check_padded_size, pad_centred, load_mnist, load_digits_tensor, resolve_image_size, load_dataset,
                         resize_center_crop, to_mode, pil_to_tensor, ImageFolderDataset, batch_indices, ImageBatches,
                         batch_stream, mnist_path)
from ldm_nb.metrics import (prepare_digits, MNISTClassifier, ClassifierRecipe, recipe_hash, classifier_accuracy,
                            feature_stats, frechet_distance, classifier_features, fd_score, fd_floor, class_coverage, psnr)

torch.set_num_threads(1)
V, T_ = ValueError, TypeError
nan, inf = float("nan"), float("inf")


@lru_cache(maxsize=None)
def M() -> SimpleNamespace:
    "The tiny objects every case uses, built once (seeded)."
    torch.manual_seed(0)
    m = SimpleNamespace()
    m.sched = NoiseSchedule("linear", 20)
    m.x = torch.randn(2, 1, 8, 8)
    m.t = torch.tensor([1, 5])
    m.ucfg = dict(image_size=8, model_channels=8, channel_mult=(1, 2), attention_resolutions=(2,), num_heads=2)
    m.net = UNetModel(UNetConfig(**m.ucfg))
    m.cls_net = UNetModel(UNetConfig(**m.ucfg, num_classes=3))
    m.ddpm = DDPM(m.net, DDPMConfig(timesteps=20, use_ema=False))
    m.ddpm_cls = DDPM(m.cls_net, DDPMConfig(timesteps=20, use_ema=False))
    m.ddim = DDIMSampler(m.ddpm)
    m.ddim_set = DDIMSampler(m.ddpm).set_timesteps(4)
    m.aecfg = dict(resolution=8, ch=8, ch_mult=(1, 2), z_channels=2, embed_dim=2, num_groups=4)
    m.ae = AutoencoderKL(AutoencoderConfig(**m.aecfg))
    m.post = m.ae.encode(m.x)
    m.cond_unet = ConditionalUNet(ConditionalUNetConfig(**m.ucfg, context_dim=6))
    m.ctx = torch.randn(2, 3, 6)
    m.wrap = DiffusionWrapper(m.cond_unet, "crossattn")
    m.xattn = CrossAttention(8, context_dim=6, heads=2, dim_head=4)
    m.clf = NoisyClassifier(NoisyClassifierConfig(channels=8, num_classes=3))
    u = ConditionalUNetConfig(image_size=4, in_channels=2, out_channels=2, model_channels=16, channel_mult=(1,),
                              attention_resolutions=(1,), num_heads=1, context_dim=8)
    m.ldm = LatentDiffusion(m.ae, ConditionalUNet(u), LDMConfig(timesteps=20, conditioning_key="crossattn", num_classes=3,
                                                               cond_embed_dim=8, ema_decay=0.9))
    u0 = ConditionalUNetConfig(image_size=4, in_channels=2, out_channels=2, model_channels=16, channel_mult=(1,),
                               attention_resolutions=(1,), num_heads=1)
    m.ldm_unc = LatentDiffusion(m.ae, ConditionalUNet(u0), LDMConfig(timesteps=20, use_ema=False))
    m.ldm_nan = LatentDiffusion(m.ae, ConditionalUNet(u0), LDMConfig(timesteps=20, use_ema=False, scale_factor=None))
    m.init = m.x[:1].clamp(-1, 1)
    m.mask = torch.ones(1, 1, 8, 8); m.mask[..., 4:, :] = 0
    m.lab = torch.tensor([0, 2])
    m.disc = NLayerDiscriminator(input_nc=1, ndf=8, n_layers=1)
    m.loss = LPIPSWithDiscriminator(disc_start=0, perceptual_weight=0., disc_num_layers=1, disc_ndf=8)
    m.mnist_clf = MNISTClassifier(feat_dim=8).eval()
    m.digits = torch.rand(4, 1, 28, 28) * 2 - 1
    m.mu, m.sig = torch.zeros(3), torch.eye(3)
    from PIL import Image
    m.img = Image.new("RGB", (12, 10), (10, 20, 30))
    m.batches = ImageBatches("digits")
    return m


def _folder():
    "A temp folder with two tiny PNGs (made once)."
    import atexit, shutil, tempfile
    from PIL import Image
    if "d" not in _folder.__dict__:
        _folder.d = tempfile.mkdtemp(prefix="fuzz_api_"); atexit.register(shutil.rmtree, _folder.d, True)
    d = _folder.d
    for i in range(2): Image.new("L", (8, 8), 40 * i).save(f"{d}/{i}.png")
    return d


def _grad_pair():
    "(nll_loss, g_loss, last_layer) with grad, for the adaptive weight."
    w = torch.randn(3, requires_grad=True)
    return (w ** 2).sum(), w.sum(), w


def _empty(*shape): return torch.zeros(0, *shape)


CASES = [
    # --- 01 schedules ---------------------------------------------------------------------------------------------
    ("sched/int dtype", lambda: NoiseSchedule(dtype=torch.int64), T_, "dtype"),
    ("sched/complex dtype", lambda: NoiseSchedule(dtype=torch.complex64), T_, "dtype"),
    ("sched/str dtype", lambda: NoiseSchedule(dtype="float32"), T_, "dtype"),
    ("sched/tiny betas", lambda: NoiseSchedule("sqrt_linear", 10, linear_start=1e-20, linear_end=1e-20), V, "linear_start"),
    ("sched/tiny linear", lambda: NoiseSchedule("linear", 10, linear_start=1e-40, linear_end=1e-40), V, "linear_start"),
    ("sched/start > end", lambda: NoiseSchedule("linear", 10, linear_start=0.5, linear_end=0.1), V, "linear_start"),
    ("sched/nan start", lambda: NoiseSchedule(linear_start=nan), V, "linear_start"),
    ("sched/inf end", lambda: NoiseSchedule(linear_end=inf), V, "linear_end"),
    ("sched/timesteps 0", lambda: NoiseSchedule(timesteps=0), V, "n_timestep"),
    ("sched/timesteps float", lambda: NoiseSchedule(timesteps=10.), T_, "n_timestep"),
    ("sched/bad name", lambda: NoiseSchedule("quadratic"), V, "schedule"),
    ("sched/v_posterior nan", lambda: NoiseSchedule(v_posterior=nan), V, "v_posterior"),
    ("sched/given nan", lambda: NoiseSchedule(given_betas=[0.1, nan]), V, "given_betas"),
    ("sched/given str", lambda: NoiseSchedule(given_betas="abc"), T_, "given_betas"),
    ("sched/given 2-D", lambda: NoiseSchedule(given_betas=torch.full((2, 2), 0.1)), V, "given_betas"),
    ("sched/cosine_s inf", lambda: make_beta_schedule("cosine", 10, cosine_s=inf), V, "cosine_s"),
    ("sched/make bool n", lambda: make_beta_schedule("linear", True), T_, "n_timestep"),
    # --- 02 forward -----------------------------------------------------------------------------------------------
    ("q_sample/sched str", lambda: q_sample("linear", M().x, M().t), T_, "sched"),
    ("q_sample/x int", lambda: q_sample(M().sched, M().x.long(), M().t), T_, "x_start"),
    ("q_sample/x list", lambda: q_sample(M().sched, [1., 2.], M().t), T_, "x_start"),
    ("q_sample/t float", lambda: q_sample(M().sched, M().x, M().t.float()), T_, "t must be an integer"),
    ("q_sample/t range", lambda: q_sample(M().sched, M().x, torch.tensor([0, 20])), V, "t must lie in [0, 20)"),
    ("q_sample/t len", lambda: q_sample(M().sched, M().x, torch.tensor([1])), V, "t must have shape"),
    ("q_sample/noise shape", lambda: q_sample(M().sched, M().x, M().t, noise=torch.randn(2, 1, 4, 4)), V, "noise"),
    ("q_sample/noise int", lambda: q_sample(M().sched, M().x, M().t, noise=M().x.long()), T_, "noise"),
    ("q_sample/generator str", lambda: q_sample(M().sched, M().x, M().t, generator="seed"), T_, "generator"),
    ("q_mean_var/t 2-D", lambda: q_mean_variance(M().sched, M().x, M().t[None]), V, "t must have 1 dims"),
    ("extract_like/a list", lambda: extract_like([1., 2.], M().t, M().x), T_, "a must be"),
    ("extract_like/t float", lambda: extract_like(M().sched.betas, M().t.float(), M().x), T_, "t must be"),
    ("check_diffusion_args/x int", lambda: check_diffusion_args(M().sched, M().t, x=M().x.int()), T_, "x must be"),
    # --- 03 posterior ---------------------------------------------------------------------------------------------
    ("q_posterior/shape", lambda: q_posterior_mean_variance(M().sched, M().x, M().x[:, :, :4], M().t), V, "x_t must have the shape"),
    ("q_posterior/sched", lambda: q_posterior_mean_variance(None, M().x, M().x, M().t), T_, "sched"),
    ("pred_start_noise/t range", lambda: predict_start_from_noise(M().sched, M().x, torch.tensor([-1, 0]), M().x), V, "t must lie"),
    ("pred_noise_start/x0 int", lambda: predict_noise_from_start(M().sched, M().x, M().t, M().x.long()), T_, "x0"),
    ("get_v/noise shape", lambda: get_v(M().sched, M().x, M().x[:1], M().t), V, "noise"),
    ("pred_start_v/v list", lambda: predict_start_from_v(M().sched, M().x, M().t, [0.]), T_, "v must be"),
    ("pred_noise_v/t len", lambda: predict_noise_from_v(M().sched, M().x, M().t[:1], M().x), V, "t must have shape"),
    # --- 04 elbo --------------------------------------------------------------------------------------------------
    ("normal_kl/no tensor", lambda: normal_kl(0., 0., 1., 1.), T_, "must be a torch.Tensor"),
    ("normal_kl/str", lambda: normal_kl(torch.zeros(2), "a", 0., 0.), T_, "logvar1"),
    ("normal_kl/int tensor", lambda: normal_kl(torch.zeros(2), torch.zeros(2, dtype=torch.long), 0., 0.), T_, "logvar1"),
    ("normal_kl/broadcast", lambda: normal_kl(torch.zeros(2), torch.zeros(3), 0., 0.), V, "broadcast"),
    ("approx_cdf/int", lambda: approx_standard_normal_cdf(torch.tensor([1, 2])), T_, "x must be a floating"),
    ("dgll/x range", lambda: discretized_gaussian_log_likelihood(torch.tensor([2.]), 0., 0.), V, "x must lie in [-1, 1]"),
    ("dgll/x nan", lambda: discretized_gaussian_log_likelihood(torch.tensor([nan, 0.]), 0., 0.), V, "x must"),
    ("dgll/means shape", lambda: discretized_gaussian_log_likelihood(torch.zeros(2), torch.zeros(3), 0.), V, "means"),
    ("mean_flat/int", lambda: mean_flat(torch.ones(2, 3, dtype=torch.long)), T_, "x must be"),
    ("mean_flat/0-D", lambda: mean_flat(torch.tensor(1.)), V, "x must have at least 1"),
    ("bits_per_dim/num_dims 0", lambda: bits_per_dim(torch.ones(2), 0), V, "num_dims"),
    ("bits_per_dim/nll str", lambda: bits_per_dim("1", 3), T_, "nll"),
    ("lvlb/param", lambda: lvlb_weights(M().sched, "score"), V, "parameterization"),
    ("lvlb/sched", lambda: lvlb_weights("linear"), T_, "sched"),
    ("lvlb/T 1", lambda: lvlb_weights(NoiseSchedule(timesteps=1)), V, "at least 2 timesteps"),
    # --- 05 unet --------------------------------------------------------------------------------------------------
    ("unet/x float16", lambda: M().net(M().x.half(), M().t), T_, "x must have the model's dtype"),
    ("unet/x float64", lambda: M().net(M().x.double(), M().t), T_, "x must have the model's dtype"),
    ("unet/x int", lambda: M().net(M().x.long(), M().t), T_, "x must be a floating"),
    ("unet/x 3-D", lambda: M().net(M().x[0], M().t), V, "x must have 4 dims"),
    ("unet/x empty", lambda: M().net(_empty(1, 8, 8), torch.zeros(0, dtype=torch.long)), V, "x must have at least one item"),
    ("unet/channels", lambda: M().net(torch.randn(2, 3, 8, 8), M().t), V, "in_channels"),
    ("unet/size", lambda: M().net(torch.randn(2, 1, 7, 8), M().t), V, "x height 7 must be divisible"),
    ("unet/timesteps 2-D", lambda: M().net(M().x, M().t[None]), V, "timesteps must have 1 dims"),
    ("unet/timesteps bool", lambda: M().net(M().x, torch.tensor([True, False])), T_, "timesteps"),
    ("unet/timesteps len", lambda: M().net(M().x, M().t[:1]), V, "timesteps must have shape"),
    ("unet/timesteps list", lambda: M().net(M().x, [1, 2]), T_, "timesteps must be a torch.Tensor"),
    ("unet/y uncond", lambda: M().net(M().x, M().t, y=M().t), V, "y was given"),
    ("unet/y missing", lambda: M().cls_net(M().x, M().t), V, "y (class labels) is required"),
    ("unet/y range", lambda: M().cls_net(M().x, M().t, y=torch.tensor([0, 3])), V, "y must lie in [0, 3)"),
    ("unet/y negative", lambda: M().cls_net(M().x, M().t, y=torch.tensor([-1, 0])), V, "y must lie in [0, 3)"),
    ("unet/y float", lambda: M().cls_net(M().x, M().t, y=torch.tensor([0., 1.])), T_, "y must be an integer"),
    ("unet/cfg str", lambda: UNetModel("cfg"), T_, "cfg must be a UNetConfig"),
    ("unet/cfg and kwargs", lambda: UNetModel(UNetConfig(), image_size=8), V, "either cfg or keyword"),
    ("unetcfg/size", lambda: UNetConfig(image_size=30, channel_mult=(1, 2, 2)), V, "image_size 30 must be divisible"),
    ("unetcfg/dropout str", lambda: UNetConfig(dropout="0"), T_, "dropout"),
    ("unetcfg/dropout 1", lambda: UNetConfig(dropout=1.), V, "dropout"),
    ("unetcfg/bool classes", lambda: UNetConfig(num_classes=True), T_, "num_classes"),
    ("unetcfg/ssn str", lambda: UNetConfig(use_scale_shift_norm="no"), T_, "use_scale_shift_norm"),
    ("unetcfg/mult str", lambda: UNetConfig(channel_mult="12"), V, "channel_mult"),
    ("unetcfg/attn res", lambda: UNetConfig(attention_resolutions=(8,)), V, "attention_resolutions"),
    ("unetcfg/heads", lambda: UNetConfig(model_channels=6, num_heads=5), V, "num_heads"),
    ("unetcfg/both y", lambda: UNetConfig(num_classes=3, adm_in_channels=4), V, "at most one of num_classes"),
    ("temb/dim 0", lambda: timestep_embedding(M().t, 0), V, "dim"),
    ("temb/list", lambda: timestep_embedding([1, 2], 8), T_, "timesteps"),
    ("temb/max_period 0", lambda: timestep_embedding(M().t, 8, 0), V, "max_period"),
    ("norm_groups/0", lambda: norm_groups(0), V, "channels"),
    ("normalization/str", lambda: normalization("8"), T_, "channels"),
    ("zero_module/str", lambda: zero_module("conv"), T_, "module"),
    ("count_params/str", lambda: count_params("net"), T_, "model"),
    ("count_params/flag str", lambda: count_params(M().net, trainable_only="no"), T_, "trainable_only"),
    ("resblock/dropout", lambda: ResBlock(4, 8, dropout=1.5), V, "dropout"),
    ("resblock/ssn", lambda: ResBlock(4, 8, use_scale_shift_norm=1), T_, "use_scale_shift_norm"),
    ("attnblock/heads", lambda: AttentionBlock(6, num_heads=4), V, "num_heads"),
    ("downsample/0", lambda: Downsample(0), V, "channels"),
    ("upsample/out", lambda: Upsample(4, out_channels=0), V, "out_channels"),
    # --- 06 ddpm --------------------------------------------------------------------------------------------------
    ("ddpm/model str", lambda: DDPM("net"), T_, "model must be an nn.Module"),
    ("ddpm/cfg str", lambda: DDPM(M().net, "cfg"), T_, "cfg must be a DDPMConfig"),
    ("ddpm/empty batch", lambda: M().ddpm(_empty(1, 8, 8)), V, "x must have at least one item"),
    ("ddpm/x int", lambda: M().ddpm(M().x.long()), T_, "x must be a floating"),
    ("ddpm/x 1-D", lambda: M().ddpm(torch.randn(4)), V, "x must have at least 2 dims"),
    ("ddpm/x float16", lambda: M().ddpm(M().x.half()), T_, "dtype"),
    ("ddpm/t range", lambda: M().ddpm(M().x, t=torch.tensor([0, 20])), V, "t must lie in [0, 20)"),
    ("ddpm/t len", lambda: M().ddpm(M().x, t=torch.tensor([0])), V, "t must have one timestep per item"),
    ("ddpm/noise shape", lambda: M().ddpm(M().x, noise=torch.randn(2, 1, 4, 4)), V, "noise must have the shape"),
    ("ddpm/noise number", lambda: M().ddpm(M().x, noise=3.), T_, "noise must be a torch.Tensor"),
    ("ddpm/noise int", lambda: M().ddpm(M().x, noise=M().x.long()), T_, "noise"),
    ("ddpm/p_losses empty", lambda: M().ddpm.p_losses(_empty(1, 8, 8), torch.zeros(0, dtype=torch.long)), V, "at least one item"),
    ("ddpm/p_mean_var clip str", lambda: M().ddpm.p_mean_variance(M().x, M().t, clip_denoised="no"), T_, "clip_denoised"),
    ("ddpm/p_sample t float", lambda: M().ddpm.p_sample(M().x, M().t.float()), T_, "t must be an integer"),
    ("ddpm/p_sample clip str", lambda: M().ddpm.p_sample(M().x, M().t, clip_denoised="no"), T_, "clip_denoised"),
    ("ddpm/loop shape 1-D", lambda: M().ddpm.p_sample_loop((2,), progress=False), V, "shape"),
    ("ddpm/loop shape str", lambda: M().ddpm.p_sample_loop("ab", progress=False), T_, "shape"),
    ("ddpm/loop shape 0", lambda: M().ddpm.p_sample_loop((0, 1, 8, 8), progress=False), V, "shape"),
    ("ddpm/loop shape float", lambda: M().ddpm.p_sample_loop((2, 1, 8., 8), progress=False), T_, "shape"),
    ("ddpm/loop log_every 0", lambda: M().ddpm.p_sample_loop(M().x.shape, log_every_t=0, progress=False), V, "log_every_t"),
    ("ddpm/loop x_T shape", lambda: M().ddpm.p_sample_loop(M().x.shape, x_T=torch.randn(1, 1, 8, 8), progress=False), V, "x_T must have shape"),
    ("ddpm/loop x_T int", lambda: M().ddpm.p_sample_loop(M().x.shape, x_T=M().x.long(), progress=False), T_, "x_T"),
    ("ddpm/loop intermediates str", lambda: M().ddpm.p_sample_loop(M().x.shape, return_intermediates="no", progress=False), T_, "return_intermediates"),
    ("ddpm/loop clip str", lambda: M().ddpm.p_sample_loop(M().x.shape, clip_denoised="no", progress=False), T_, "clip_denoised"),
    ("ddpm/loop progress str", lambda: M().ddpm.p_sample_loop(M().x.shape, progress="no"), T_, "progress"),
    ("ddpm/loop model_fn str", lambda: M().ddpm.p_sample_loop(M().x.shape, model_fn="f", progress=False), T_, "model_fn"),
    ("ddpm/sample batch 0", lambda: M().ddpm.sample(0, (1, 8, 8), progress=False), V, "batch_size"),
    ("ddpm/sample shape int", lambda: M().ddpm.sample(2, 8, progress=False), T_, "shape"),
    ("ddpm/sample use_ema str", lambda: M().ddpm.sample(2, (1, 8, 8), use_ema="no", progress=False), T_, "use_ema"),
    ("ddpmcfg/T 0", lambda: DDPMConfig(timesteps=0), V, "timesteps must be >= 1"),
    ("ddpmcfg/param", lambda: DDPMConfig(parameterization="score"), V, "parameterization"),
    ("ddpmcfg/tiny betas", lambda: DDPMConfig(beta_schedule="sqrt_linear", linear_start=1e-20, linear_end=1e-20), V, "linear_start"),
    ("ddpmcfg/ema nan", lambda: DDPMConfig(ema_decay=nan), V, "ema_decay"),
    ("ddpmcfg/use_ema str", lambda: DDPMConfig(use_ema="no"), T_, "use_ema"),
    ("ema/decay 2", lambda: EMA(M().net, 2.), V, "decay"),
    ("ema/model str", lambda: EMA("net"), T_, "model must be an nn.Module"),
    ("ema/num_updates str", lambda: EMA(M().net, use_num_updates="no"), T_, "use_num_updates"),
    ("ema/update str", lambda: EMA(M().net).update("net"), T_, "model must be an nn.Module"),
    ("ema/update other net", lambda: EMA(M().net).update(nn.Linear(2, 2)), V, "model must have the parameters"),
    ("oracle/x0 str", lambda: OracleModel("x0", M().sched), T_, "x0"),
    ("oracle/sched str", lambda: OracleModel(M().x, "sched"), T_, "schedule"),
    ("oracle/param", lambda: OracleModel(M().x, M().sched, "score"), V, "parameterization"),
    ("oracle/offset nan", lambda: OracleModel(M().x, M().sched, offset=nan), V, "offset"),
    # --- 07 ddim --------------------------------------------------------------------------------------------------
    ("ddim_ts/S > T", lambda: ddim_timesteps(10, 11), V, "sample_steps"),
    ("ddim_ts/discretize", lambda: ddim_timesteps(10, 5, "log"), V, "discretize"),
    ("ddim_sigmas/descending", lambda: ddim_sigmas(M().sched.alphas_cumprod, torch.tensor([10, 5, 0]), 0.5), V, "timesteps"),
    ("ddim_sigmas/repeated", lambda: ddim_sigmas(M().sched.alphas_cumprod, torch.tensor([3, 3, 9]), 1.), V, "timesteps"),
    ("ddim_sigmas/range", lambda: ddim_sigmas(M().sched.alphas_cumprod, torch.tensor([3, 30]), 1.), V, "timesteps"),
    ("ddim_sigmas/float ts", lambda: ddim_sigmas(M().sched.alphas_cumprod, torch.tensor([3., 9.]), 1.), T_, "timesteps"),
    ("ddim_sigmas/list abar", lambda: ddim_sigmas([0.9, 0.5], torch.tensor([0, 1]), 1.), T_, "alphas_cumprod"),
    ("ddim_sigmas/eta nan", lambda: ddim_sigmas(M().sched.alphas_cumprod, torch.tensor([0, 9]), nan), V, "eta"),
    ("ddim/model str", lambda: DDIMSampler("ddpm"), T_, "model must be a DDPM-like"),
    ("ddim/model_fn str", lambda: DDIMSampler(M().ddpm, model_fn="f"), T_, "model_fn"),
    ("ddim/set eta 2", lambda: DDIMSampler(M().ddpm).set_timesteps(5, eta=2.), V, "eta"),
    ("ddim/set steps 0", lambda: DDIMSampler(M().ddpm).set_timesteps(0), V, "sample_steps"),
    ("ddim/step unset", lambda: DDIMSampler(M().ddpm).step(M().x, 0, M().x), V, "set_timesteps"),
    ("ddim/step i", lambda: M().ddim_set.step(M().x, 4, M().x), V, "i must be <= 3"),
    ("ddim/step out shape", lambda: M().ddim_set.step(M().x[:1], 0, M().x), V, "model_output"),
    ("ddim/step x int", lambda: M().ddim_set.step(M().x, 0, M().x.long()), T_, "x must be"),
    ("ddim/step clip str", lambda: M().ddim_set.step(M().x, 0, M().x, clip_denoised="no"), T_, "clip_denoised"),
    ("ddim/sample shape str", lambda: M().ddim.sample("ab", 2, progress=False), T_, "shape"),
    ("ddim/sample shape 1-D", lambda: M().ddim.sample((2,), 2, progress=False), V, "shape"),
    ("ddim/sample steps 0", lambda: M().ddim.sample(M().x.shape, 0, progress=False), V, "sample_steps"),
    ("ddim/sample eta nan", lambda: M().ddim.sample(M().x.shape, 2, eta=nan, progress=False), V, "eta"),
    ("ddim/sample clip str", lambda: M().ddim.sample(M().x.shape, 2, clip_denoised="no", progress=False), T_, "clip_denoised"),
    ("ddim/sample inter str", lambda: M().ddim.sample(M().x.shape, 2, return_intermediates="no", progress=False), T_, "return_intermediates"),
    ("ddim/sample x_T shape", lambda: M().ddim.sample(M().x.shape, 2, x_T=M().x[:1], progress=False), V, "x_T must have shape"),
    ("ddim/invert x0 int", lambda: M().ddim.invert(M().x.long(), 2, progress=False), T_, "x0"),
    ("ddim/invert steps", lambda: M().ddim.invert(M().x, 21, progress=False), V, "sample_steps"),
    ("ddim/invert empty", lambda: M().ddim.invert(_empty(1, 8, 8), 2, progress=False), V, "x0 must have at least one item"),
    # --- 08 autoencoder -------------------------------------------------------------------------------------------
    ("ae/encode float16", lambda: M().ae.encode(M().x.half()), T_, "x must have the model's dtype"),
    ("ae/encode float64", lambda: M().ae.encode(M().x.double()), T_, "x must have the model's dtype"),
    ("ae/encode empty", lambda: M().ae.encode(_empty(1, 8, 8)), V, "x must have at least one item"),
    ("ae/encode channels", lambda: M().ae.encode(torch.randn(2, 3, 8, 8)), V, "in_channels"),
    ("ae/encode size", lambda: M().ae.encode(torch.randn(2, 1, 7, 8)), V, "not divisible"),
    ("ae/decode float64", lambda: M().ae.decode(torch.randn(2, 2, 4, 4, dtype=torch.float64)), T_, "z must have the model's dtype"),
    ("ae/decode channels", lambda: M().ae.decode(torch.randn(2, 3, 4, 4)), V, "embed_dim"),
    ("ae/forward flag", lambda: M().ae(M().x, sample_posterior="no"), T_, "sample_posterior"),
    ("ae/latent_shape", lambda: M().ae.latent_shape(7, 8), V, "not divisible"),
    ("ae/cfg str", lambda: AutoencoderKL("cfg"), T_, "cfg must be an AutoencoderConfig"),
    ("aecfg/double_z", lambda: AutoencoderConfig(double_z=False), V, "double_z"),
    ("aecfg/groups", lambda: AutoencoderConfig(num_groups=5), V, "num_groups"),
    ("aecfg/mult str", lambda: AutoencoderConfig(ch_mult="12"), V, "ch_mult"),
    ("aecfg/dropout nan", lambda: AutoencoderConfig(dropout=nan), V, "dropout"),
    ("aecfg/attn", lambda: AutoencoderConfig(attn_resolutions=(5,)), V, "attn_resolutions"),
    ("gauss/int", lambda: DiagonalGaussianDistribution(torch.ones(2, 4, dtype=torch.long)), T_, "parameters"),
    ("gauss/odd", lambda: DiagonalGaussianDistribution(torch.ones(2, 3)), V, "even number of channels"),
    ("gauss/deterministic str", lambda: DiagonalGaussianDistribution(torch.ones(2, 4), deterministic="no"), T_, "deterministic"),
    ("gauss/kl other", lambda: M().post.kl("other"), T_, "other"),
    ("gauss/nll dims", lambda: M().post.nll(M().post.mean, dims=(0,)), V, "dims"),
    ("gauss/sample gen str", lambda: M().post.sample("seed"), T_, "generator"),
    ("Normalize/str", lambda: Normalize("8"), T_, "in_channels"),
    ("Normalize/groups", lambda: Normalize(30, 32), V, "num_groups"),
    ("pad_to/multiple 0", lambda: pad_to(M().x, 0), V, "multiple"),
    ("pad_to/list", lambda: pad_to([1.], 2), T_, "x"),
    # --- 09 losses ------------------------------------------------------------------------------------------------
    ("actnorm/1x1 batch", lambda: ActNorm(2).train()(torch.randn(1, 2, 1, 1)), V, "x must have at least 2"),
    ("actnorm/channels", lambda: ActNorm(2)(torch.randn(2, 3, 4, 4)), V, "num_features"),
    ("actnorm/0", lambda: ActNorm(0), V, "num_features"),
    ("disc/small", lambda: M().disc(torch.randn(1, 1, 4, 4)), V, "too small"),
    ("disc/channels", lambda: M().disc(torch.randn(1, 3, 16, 16)), V, "input_nc"),
    ("disc/float64", lambda: M().disc(torch.randn(1, 1, 16, 16, dtype=torch.float64)), T_, "input must have the model's dtype"),
    ("disc/actnorm str", lambda: NLayerDiscriminator(use_actnorm="no"), T_, "use_actnorm"),
    ("hinge/empty", lambda: hinge_d_loss(_empty(1), _empty(1)), V, "logits_real must have at least one"),
    ("vanilla/empty", lambda: vanilla_d_loss(torch.zeros(2, 1), _empty(1)), V, "logits_fake must have at least one"),
    ("hinge/int", lambda: hinge_d_loss(torch.ones(2, dtype=torch.long), torch.ones(2)), T_, "logits_real"),
    ("gen_loss/empty", lambda: generator_loss(_empty(1)), V, "logits_fake must have at least one"),
    ("adopt/value str", lambda: adopt_weight(1., 3, 2, value="x"), T_, "value"),
    ("adopt/weight nan", lambda: adopt_weight(nan, 3), V, "weight"),
    ("adopt/step -1", lambda: adopt_weight(1., -1), V, "global_step"),
    ("nll_logvar/empty", lambda: nll_with_logvar(_empty(1, 4, 4), torch.zeros(())), V, "rec_loss must have at least one"),
    ("nll_logvar/logvar 1-D", lambda: nll_with_logvar(torch.ones(2, 1, 4, 4), torch.zeros(1)), V, "logvar"),
    ("nll_logvar/weights", lambda: nll_with_logvar(torch.ones(2, 1, 4, 4), torch.zeros(()), torch.ones(3)), V, "weights"),
    ("adaptive/no grad", lambda: calculate_adaptive_weight(torch.ones(()), torch.ones(()), torch.ones(3)), V, "nll_loss must require grad"),
    ("adaptive/weight nan", lambda: calculate_adaptive_weight(*_grad_pair(), disc_weight=nan), V, "disc_weight"),
    ("lpipsdisc/start", lambda: LPIPSWithDiscriminator(disc_start=-1, perceptual_weight=0.), V, "disc_start"),
    ("lpipsdisc/loss", lambda: LPIPSWithDiscriminator(0, perceptual_weight=0., disc_loss="wgan"), V, "disc_loss"),
    ("lpipsdisc/ndf", lambda: LPIPSWithDiscriminator(0, perceptual_weight=0., disc_ndf=0), V, "ndf"),
    ("lpipsdisc/logvar nan", lambda: LPIPSWithDiscriminator(0, perceptual_weight=0., logvar_init=nan), V, "logvar_init"),
    ("lpipsdisc/opt idx", lambda: M().loss(M().x, M().x, M().post, 2, 0), V, "optimizer_idx"),
    ("lpipsdisc/split", lambda: M().loss(M().x, M().x, M().post, 1, 0, split=3), T_, "split"),
    ("lpipsdisc/posteriors", lambda: M().loss(M().x, M().x, "post", 1, 0), T_, "posteriors"),
    ("lpipsdisc/empty", lambda: M().loss(_empty(1, 8, 8), _empty(1, 8, 8), DiagonalGaussianDistribution(_empty(4, 4, 4)), 1, 0), V, "inputs must have at least one"),
    ("trunk/net", lambda: trunk_weights_path("resnet"), V, "net"),
    # --- 10 attention ---------------------------------------------------------------------------------------------
    ("xattn/query_dim", lambda: CrossAttention(0), V, "query_dim"),
    ("xattn/heads str", lambda: CrossAttention(8, heads="2"), T_, "heads"),
    ("xattn/dropout 1", lambda: CrossAttention(8, dropout=1.), V, "dropout"),
    ("xattn/x 2-D", lambda: M().xattn.attention_probs(torch.randn(2, 8), M().ctx), V, "x must have shape"),
    ("xattn/ctx missing", lambda: M().xattn.attention_probs(torch.randn(2, 5, 8)), V, "context is required"),
    ("xattn/ctx dim", lambda: M().xattn.attention_probs(torch.randn(2, 5, 8), torch.randn(2, 3, 5)), V, "context must have shape"),
    ("xattn/mask float", lambda: M().xattn.attention_probs(torch.randn(2, 5, 8), M().ctx, torch.ones(2, 3)), T_, "mask"),
    ("xattn/mask empty row", lambda: M().xattn.attention_probs(torch.randn(2, 5, 8), M().ctx, torch.zeros(2, 3, dtype=torch.bool)), V, "mask"),
    ("xattn/x float64", lambda: M().xattn.check_inputs(torch.randn(2, 5, 8, dtype=torch.float64), M().ctx), T_, "x must have the model's dtype"),
    ("xattn/ctx float64", lambda: M().xattn.check_inputs(torch.randn(2, 5, 8), M().ctx.double()), T_, "context must have the model's dtype"),
    ("geglu/0", lambda: GEGLU(0, 2), V, "dim_in"),
    ("ff/glu str", lambda: FeedForward(8, glu="yes"), T_, "glu"),
    ("ff/mult 0", lambda: FeedForward(8, mult=0), V, "mult"),
    ("btb/dim", lambda: BasicTransformerBlock(0, 2, 4), V, "dim"),
    ("btb/gated str", lambda: BasicTransformerBlock(8, 2, 4, gated_ff="no"), T_, "glu"),
    ("st/depth", lambda: SpatialTransformer(8, 2, 4, depth=0), V, "depth"),
    ("st/context_dim", lambda: SpatialTransformer(8, 2, 4, context_dim=0), V, "context_dim"),
    ("cucfg/context_dim", lambda: ConditionalUNetConfig(context_dim=0), V, "context_dim"),
    ("cucfg/depth", lambda: ConditionalUNetConfig(transformer_depth=0), V, "transformer_depth"),
    ("cucfg/no attention", lambda: ConditionalUNetConfig(context_dim=4, attention_resolutions=(), mid_attention=False), V, "context_dim needs"),
    ("cunet/cfg str", lambda: ConditionalUNet("cfg"), T_, "cfg must be a UNetConfig"),
    ("cunet/ctx missing", lambda: M().cond_unet(M().x, M().t), V, "context is required"),
    ("cunet/ctx D", lambda: M().cond_unet(M().x, M().t, context=torch.randn(2, 3, 5)), V, "context must have shape"),
    ("cunet/ctx int", lambda: M().cond_unet(M().x, M().t, context=torch.ones(2, 3, 6, dtype=torch.long)), T_, "context"),
    ("cunet/ctx float64", lambda: M().cond_unet(M().x, M().t, context=M().ctx.double()), T_, "context must have the model's dtype"),
    ("cunet/x float16", lambda: M().cond_unet(M().x.half(), M().t, context=M().ctx), T_, "x must have the model's dtype"),
    ("wrap/model str", lambda: DiffusionWrapper("unet"), T_, "diffusion_model"),
    ("wrap/key", lambda: DiffusionWrapper(M().net, "bogus"), V, "conditioning_key"),
    ("wrap/crossattn plain", lambda: DiffusionWrapper(M().net, "crossattn"), V, "cross-attention"),
    ("wrap/ctx missing", lambda: M().wrap(M().x, M().t), V, "requires c_crossattn"),
    ("wrap/ctx list", lambda: M().wrap(M().x, M().t, c_crossattn=[1, 2]), T_, "c_crossattn"),
    ("wrap/ctx empty list", lambda: M().wrap(M().x, M().t, c_crossattn=[]), T_, "c_crossattn"),
    ("wrap/extra y", lambda: M().wrap(M().x, M().t, c_crossattn=M().ctx, y=M().t), V, "takes no y"),
    ("wrap/x 3-D", lambda: M().wrap(M().x[0], M().t, c_crossattn=M().ctx), V, "x must have 4 dims"),
    # --- 11 guidance ----------------------------------------------------------------------------------------------
    ("drop_labels/float", lambda: drop_labels(torch.ones(3), 0.1, 10), T_, "labels"),
    ("drop_labels/p 1.5", lambda: drop_labels(torch.ones(3, dtype=torch.long), 1.5, 10), V, "p_uncond"),
    ("drop_labels/p nan", lambda: drop_labels(torch.ones(3, dtype=torch.long), nan, 10), V, "p_uncond"),
    ("drop_labels/null -1", lambda: drop_labels(torch.ones(3, dtype=torch.long), 0.1, -1), V, "null_label"),
    ("drop_cond/not dict", lambda: drop_conditions([1], {}, 0.1), T_, "cond must be a dict"),
    ("drop_cond/keys", lambda: drop_conditions({"y": M().t}, {"c": M().t}, 0.1), V, "same keys"),
    ("drop_cond/empty", lambda: drop_conditions({}, {}, 0.1), V, "at least one condition"),
    ("drop_cond/uncond shape", lambda: drop_conditions({"y": M().ctx}, {"y": torch.zeros(1, 3, 5)}, 0.1), V, "uncond['y']"),
    ("combine/shape", lambda: guidance_combine(M().x, M().x[:1], 2.), V, "same shape"),
    ("combine/scale nan", lambda: guidance_combine(M().x, M().x, nan), V, "scale"),
    ("combine/scale huge", lambda: guidance_combine(M().x, M().x, 1e300), V, "scale"),
    ("combine/not tensor", lambda: guidance_combine(1., M().x, 2.), T_, "out_cond"),
    ("combine/int", lambda: guidance_combine(M().x, M().x.long(), 2.), T_, "out_uncond"),
    ("combine_w/broadcast", lambda: guidance_combine_w(M().x, M().x[:1], 2.), V, "same shape"),
    ("combine_w/w inf", lambda: guidance_combine_w(M().x, M().x, inf), V, "w must be finite"),
    ("combine_w/not tensor", lambda: guidance_combine_w(M().x, [0.], 2.), T_, "out_uncond"),
    ("cfg_fn/apply str", lambda: classifier_free_model_fn("f", {"y": M().t}, {"y": M().t}, 2.), T_, "apply_model"),
    ("cfg_fn/scale nan", lambda: classifier_free_model_fn(M().ddpm_cls.apply_model, {"y": M().t}, {"y": M().t}, nan), V, "scale"),
    ("cfg_fn/scale huge", lambda: classifier_free_model_fn(M().ddpm_cls.apply_model, {"y": M().t}, {"y": M().t}, 1e30), V, "scale"),
    ("cfg_fn/extra kw", lambda: classifier_free_model_fn(M().ddpm_cls.apply_model, {"y": M().t}, {"y": M().t}, 2.)(M().x, M().t, y=M().t), T_, "extra"),
    ("cfg_fn/cond batch", lambda: classifier_free_model_fn(M().ddpm_cls.apply_model, {"y": M().t[:1]}, {"y": M().t[:1]}, 2.)(M().x, M().t), V, "batch size"),
    ("nccfg/channels 1", lambda: NoisyClassifierConfig(channels=1), V, "channels"),
    ("nccfg/classes 0", lambda: NoisyClassifierConfig(num_classes=0), V, "num_classes"),
    ("nc/cfg str", lambda: NoisyClassifier("cfg"), T_, "cfg must be a NoisyClassifierConfig"),
    ("nc/x float64", lambda: M().clf(M().x.double(), M().t), T_, "x must have the model's dtype"),
    ("nc/x channels", lambda: M().clf(torch.randn(2, 3, 8, 8), M().t), V, "channels"),
    ("nc/t 2-D", lambda: M().clf(M().x, M().t[None]), V, "t must have 1 dims"),
    ("nc/t bool", lambda: M().clf(M().x, torch.tensor([True, False])), T_, "t"),
    ("nc_loss/label -100", lambda: noisy_classifier_loss(M().clf, M().sched, M().x, torch.tensor([-100, -100])), V, "labels must lie in [0, 3)"),
    ("nc_loss/label 3", lambda: noisy_classifier_loss(M().clf, M().sched, M().x, torch.tensor([0, 3])), V, "labels must lie in [0, 3)"),
    ("nc_loss/label float", lambda: noisy_classifier_loss(M().clf, M().sched, M().x, torch.tensor([0., 1.])), T_, "labels"),
    ("nc_loss/empty", lambda: noisy_classifier_loss(M().clf, M().sched, _empty(1, 8, 8), torch.zeros(0, dtype=torch.long)), V, "x0 must have at least one item"),
    ("nc_loss/schedule str", lambda: noisy_classifier_loss(M().clf, "sched", M().x, M().lab), T_, "schedule must be a NoiseSchedule"),
    ("nc_loss/classifier str", lambda: noisy_classifier_loss("clf", M().sched, M().x, M().lab), T_, "classifier"),
    ("nc_loss/t range", lambda: noisy_classifier_loss(M().clf, M().sched, M().x, M().lab, t=torch.tensor([0, 20])), V, "t must lie"),
    ("clf_grad/label 3", lambda: classifier_log_prob_grad(M().clf, M().x, M().t, torch.tensor([0, 3])), V, "labels must lie in [0, 3)"),
    ("clf_grad/label -1", lambda: classifier_log_prob_grad(M().clf, M().x, M().t, torch.tensor([-1, 0])), V, "labels must lie in [0, 3)"),
    ("clf_grad/len", lambda: classifier_log_prob_grad(M().clf, M().x, M().t, torch.tensor([0])), V, "one label per item"),
    ("clf_grad/x int", lambda: classifier_log_prob_grad(M().clf, M().x.long(), M().t, M().lab), T_, "x must be"),
    ("clf_guided/label -1", lambda: classifier_guided_model_fn(M().ddpm.apply_model, M().clf, torch.tensor([-1, 0]), 2., M().sched), V, "labels must be >= 0"),
    ("clf_guided/label 3 at call", lambda: classifier_guided_model_fn(M().ddpm.apply_model, M().clf, torch.tensor([0, 3]), 2., M().ddpm.schedule)(M().x, M().t), V, "labels must lie in [0, 3)"),
    ("clf_guided/scale nan", lambda: classifier_guided_model_fn(M().ddpm.apply_model, M().clf, M().lab, nan, M().sched), V, "scale"),
    ("clf_guided/scale huge", lambda: classifier_guided_model_fn(M().ddpm.apply_model, M().clf, M().lab, 1e30, M().sched), V, "scale"),
    ("clf_guided/schedule", lambda: classifier_guided_model_fn(M().ddpm.apply_model, M().clf, M().lab, 2., "sched"), T_, "schedule"),
    ("clf_guided/param", lambda: classifier_guided_model_fn(M().ddpm.apply_model, M().clf, M().lab, 2., M().sched, "score"), V, "parameterization"),
    ("clf_guided/classifier", lambda: classifier_guided_model_fn(M().ddpm.apply_model, "clf", M().lab, 2., M().sched), T_, "classifier"),
    ("img2img_steps/0", lambda: img2img_steps(0., 10), V, "strength"),
    ("img2img_steps/nan", lambda: img2img_steps(nan, 10), V, "strength"),
    ("img2img/sampler", lambda: ddim_img2img("s", M().x, 0.5, 2, progress=False), T_, "sampler"),
    ("img2img/x0 int", lambda: ddim_img2img(M().ddim, M().x.long(), 0.5, 2, progress=False), T_, "x0"),
    ("img2img/noise shape", lambda: ddim_img2img(M().ddim, M().x, 0.5, 2, noise=M().x[:1], progress=False), V, "noise"),
    ("img2img/strength 2", lambda: ddim_img2img(M().ddim, M().x, 2., 2, progress=False), V, "strength"),
    ("img2img/eta nan", lambda: ddim_img2img(M().ddim, M().x, 0.5, 2, eta=nan, progress=False), V, "eta"),
    ("img2img/clip str", lambda: ddim_img2img(M().ddim, M().x, 0.5, 2, clip_denoised="no", progress=False), T_, "clip_denoised"),
    ("img2img/empty", lambda: ddim_img2img(M().ddim, _empty(1, 8, 8), 0.5, 2, progress=False), V, "x0 must have at least one item"),
    ("check_mask/values", lambda: check_mask(torch.full((1, 1, 8, 8), 0.5), M().x), V, "only 0"),
    ("check_mask/dims", lambda: check_mask(torch.ones(8, 8), M().x), V, "dims of x0"),
    ("check_mask/x0 str", lambda: check_mask(M().mask, "x0"), T_, "x0"),
    ("inpaint/x_T int", lambda: ddim_inpaint(M().ddim, M().x, M().mask, 2, x_T=M().x.long(), progress=False), T_, "x_T"),
    ("inpaint/x_T shape", lambda: ddim_inpaint(M().ddim, M().x, M().mask, 2, x_T=M().x[:1], progress=False), V, "x_T"),
    ("inpaint/sampler", lambda: ddim_inpaint(M().ddpm, M().x, M().mask, 2, progress=False), T_, "sampler"),
    # --- 12 ldm ---------------------------------------------------------------------------------------------------
    ("embedder/0", lambda: ClassEmbedder(0, 8), V, "num_classes"),
    ("embedder/mode", lambda: ClassEmbedder(3, 8, mode="concat"), V, "mode"),
    ("embedder/adm tokens", lambda: ClassEmbedder(3, 8, 2, "adm"), V, "n_tokens"),
    ("embedder/int32", lambda: ClassEmbedder(3, 8)(torch.tensor([0, 1], dtype=torch.int32)), T_, "labels must be an int64"),
    ("embedder/range", lambda: ClassEmbedder(3, 8)(torch.tensor([0, 4])), V, "labels must lie in [0, 3]"),
    ("embedder/null batch", lambda: ClassEmbedder(3, 8).null_labels(0), V, "batch_size"),
    ("ldmcfg/key", lambda: LDMConfig(conditioning_key="text"), V, "conditioning_key"),
    ("ldmcfg/classes missing", lambda: LDMConfig(conditioning_key="crossattn"), V, "num_classes"),
    ("ldmcfg/p 2", lambda: LDMConfig(conditioning_key="crossattn", num_classes=3, p_uncond=2.), V, "p_uncond"),
    ("ldmcfg/scale 0", lambda: LDMConfig(scale_factor=0.), V, "scale_factor"),
    ("ldmcfg/scale nan", lambda: LDMConfig(scale_factor=nan), V, "scale_factor"),
    ("ldmcfg/by_std str", lambda: LDMConfig(scale_by_std="yes", scale_factor=None), T_, "scale_by_std"),
    ("ldm/ae str", lambda: LatentDiffusion("ae", M().net), T_, "first_stage"),
    ("ldm/unet str", lambda: LatentDiffusion(M().ae, "unet"), T_, "unet"),
    ("ldm/cfg str", lambda: LatentDiffusion(M().ae, M().net, "cfg"), T_, "cfg must be an LDMConfig"),
    ("ldm/fit", lambda: LatentDiffusion(M().ae, M().net, LDMConfig(timesteps=20)), V, "out_channels"),
    ("ldm/forward empty", lambda: M().ldm(_empty(1, 8, 8), torch.zeros(0, dtype=torch.long)), V, "x must have at least one item"),
    ("ldm/forward empty unc", lambda: M().ldm_unc(_empty(1, 8, 8)), V, "x must have at least one item"),
    ("ldm/forward float16", lambda: M().ldm(M().x.half(), M().lab), T_, "x must have the model's dtype"),
    ("ldm/forward labels len", lambda: M().ldm(M().x, M().lab[:1]), V, "one label per image"),
    ("ldm/forward labels float", lambda: M().ldm(M().x, M().lab.float()), T_, "labels"),
    ("ldm/forward labels range", lambda: M().ldm(M().x, torch.tensor([0, 4])), V, "labels must lie in [0, 3]"),
    ("ldm/forward labels missing", lambda: M().ldm(M().x), V, "labels are required"),
    ("ldm/forward unc labels", lambda: M().ldm_unc(M().x, M().lab), V, "labels were given"),
    ("ldm/encode sample str", lambda: M().ldm.encode_first_stage(M().x, sample="no"), T_, "sample"),
    ("ldm/encode unset scale", lambda: M().ldm_nan.encode_first_stage(M().x), V, "scale_factor is not set yet"),
    ("ldm/decode channels", lambda: M().ldm.decode_first_stage(torch.randn(2, 3, 4, 4)), V, "z must have 2 channels"),
    ("ldm/decode float64", lambda: M().ldm.decode_first_stage(torch.randn(2, 2, 4, 4, dtype=torch.float64)), T_, "z must have the model's dtype"),
    ("ldm/estimate batch", lambda: M().ldm_nan.estimate_scale_factor(M().x, batch_size=0), V, "batch_size"),
    ("ldm/learned c_concat", lambda: M().ldm.get_learned_conditioning(M().lab, c_concat=M().x), V, "c_concat was given"),
    ("ldm/null_labels unc", lambda: M().ldm_unc.null_labels(2), V, "does not condition on labels"),
    ("ldm/sample labels 0", lambda: M().ldm.sample_images(0, sample_steps=2), V, "labels (a batch size)"),
    ("ldm/sample sampler", lambda: M().ldm.sample_images(M().lab, "plms"), V, "sampler"),
    ("ldm/sample steps 0", lambda: M().ldm.sample_images(M().lab, sample_steps=0), V, "sample_steps"),
    ("ldm/sample steps > T", lambda: M().ldm.sample_images(M().lab, sample_steps=21), V, "sample_steps"),
    ("ldm/sample eta nan", lambda: M().ldm.sample_images(M().lab, sample_steps=2, eta=nan), V, "eta"),
    ("ldm/sample scale nan", lambda: M().ldm.sample_images(M().lab, sample_steps=2, guidance_scale=nan), V, "guidance_scale"),
    ("ldm/sample scale huge", lambda: M().ldm.sample_images(M().lab, sample_steps=2, guidance_scale=1e30), V, "guidance_scale"),
    ("ldm/sample scale unc", lambda: M().ldm_unc.sample_images(2, sample_steps=2, guidance_scale=3.), V, "needs a label-conditional"),
    ("ldm/sample image_size str", lambda: M().ldm.sample_images(M().lab, sample_steps=2, image_size="8"), T_, "image_size"),
    ("ldm/sample image_size odd", lambda: M().ldm.sample_images(M().lab, sample_steps=2, image_size=(7, 8)), V, "not divisible"),
    ("ldm/sample image_size pair str", lambda: M().ldm.sample_images(M().lab, sample_steps=2, image_size=("8", 8)), T_, "h"),
    ("ldm/sample labels 2-D", lambda: M().ldm.sample_images(M().lab[None], sample_steps=2), V, "labels must have 1 dims"),
    ("ldm/sample labels range", lambda: M().ldm.sample_images(torch.tensor([0, 5]), sample_steps=2), V, "labels must lie"),
    ("ldm/sample labels str", lambda: M().ldm.sample_images("0,1", sample_steps=2), T_, "labels"),
    ("ldm/sample x_T", lambda: M().ldm.sample_images(M().lab, sample_steps=2, x_T=torch.randn(1, 2, 4, 4)), V, "x_T must have shape"),
    ("ldm/sample use_ema str", lambda: M().ldm.sample_images(M().lab, sample_steps=2, use_ema="no"), T_, "use_ema"),
    ("ldm/sample clamp str", lambda: M().ldm.sample_images(M().lab, sample_steps=2, clamp="no"), T_, "clamp"),
    ("ldm/sample progress str", lambda: M().ldm.sample_images(M().lab, sample_steps=2, progress="no"), T_, "progress"),
    ("guided_fn/ldm str", lambda: guided_model_fn("ldm", M().lab), T_, "ldm must be a LatentDiffusion"),
    ("guided_fn/both", lambda: guided_model_fn(M().ldm, M().lab, 3., model_fn=lambda x, t: x), V, "either guidance_scale or model_fn"),
    ("class_grid/ldm str", lambda: class_grid("ldm"), T_, "ldm must be a LatentDiffusion"),
    ("class_grid/n 0", lambda: class_grid(M().ldm, 0), V, "n must be >= 1"),
    ("class_grid/class 3", lambda: class_grid(M().ldm, 1, [3]), V, "class must be <= 2"),
    ("class_grid/classes empty", lambda: class_grid(M().ldm, 1, []), V, "classes must name at least one"),
    ("class_grid/classes int", lambda: class_grid(M().ldm, 1, 2), T_, "classes"),
    ("class_grid/seed -1", lambda: class_grid(M().ldm, 1, seed=-1), V, "seed"),
    ("class_grid/n_rows cond", lambda: class_grid(M().ldm, 1, n_rows=2), V, "n_rows is for an unconditional"),
    ("class_grid/classes unc", lambda: class_grid(M().ldm_unc, 1, [0]), V, "takes no classes"),
    ("class_grid/scale inf", lambda: class_grid(M().ldm, 1, [0], sample_steps=2, guidance_scale=inf), V, "guidance_scale"),
    ("latent_mask/f 0", lambda: latent_mask(M().mask, 0), V, "f must be >= 1"),
    ("latent_mask/int", lambda: latent_mask(M().mask.long(), 2), T_, "mask"),
    ("latent_mask/size", lambda: latent_mask(torch.ones(1, 1, 7, 8), 2), V, "divisible"),
    ("edit/neither", lambda: edit_images(M().ldm, M().init, M().lab), V, "exactly one of strength"),
    ("edit/both", lambda: edit_images(M().ldm, M().init, M().lab, strength=0.5, mask=M().mask), V, "exactly one of strength"),
    ("edit/init batch", lambda: edit_images(M().ldm, M().x, M().lab, strength=0.5), V, "init must be one image"),
    ("edit/mask shape", lambda: edit_images(M().ldm, M().init, M().lab, mask=torch.ones(1, 1, 4, 4)), V, "mask must have shape"),
    ("edit/strength 0", lambda: edit_images(M().ldm, M().init, M().lab, strength=0., sample_steps=2), V, "strength"),
    ("edit/strength nan", lambda: edit_images(M().ldm, M().init, M().lab, strength=nan, sample_steps=2), V, "strength"),
    ("edit/labels 0", lambda: edit_images(M().ldm, M().init, 0, strength=0.5, sample_steps=2), V, "labels (a batch size)"),
    ("edit/ldm str", lambda: edit_images("ldm", M().init, M().lab, strength=0.5), T_, "ldm must be a LatentDiffusion"),
    ("edit/init float64", lambda: edit_images(M().ldm, M().init.double(), M().lab, strength=0.5, sample_steps=2), T_, "init must have the model's dtype"),
    ("edit/scale huge", lambda: edit_images(M().ldm, M().init, M().lab, strength=0.5, sample_steps=2, guidance_scale=1e30), V, "guidance_scale"),
    ("sample_ldm/ldm str", lambda: sample_ldm("ldm"), T_, "ldm must be a LatentDiffusion"),
    ("sample_ldm/ddpm edit", lambda: sample_ldm(M().ldm, [0], 1, "ddpm", 2, init_image=M().init, strength=0.5), V, "use sampler='ddim'"),
    ("sample_ldm/strength alone", lambda: sample_ldm(M().ldm, [0], 1, sample_steps=2, strength=0.5), V, "edit an init_image"),
    ("sample_ldm/strength 2", lambda: sample_ldm(M().ldm, [0], 1, sample_steps=2, init_image=M().init, strength=2.), V, "strength"),
    ("sample_ldm/n 0", lambda: sample_ldm(M().ldm, [0], 0), V, "n must be >= 1"),
    ("sample_ldm/eta nan", lambda: sample_ldm(M().ldm, [0], 1, sample_steps=2, eta=nan), V, "eta"),
    # --- 13 data --------------------------------------------------------------------------------------------------
    ("padded/dataset", lambda: check_padded_size("cifar", 32), V, "dataset"),
    ("padded/odd", lambda: check_padded_size("mnist", 29), V, "image_size must be 28 + an even number"),
    ("padded/str", lambda: check_padded_size("mnist", "32"), T_, "image_size"),
    ("pad_centred/smaller", lambda: pad_centred(torch.zeros(2, 1, 8, 8), 6), V, "size"),
    ("pad_centred/odd", lambda: pad_centred(torch.zeros(2, 1, 8, 8), 11), V, "size"),
    ("pad_centred/list", lambda: pad_centred([[0.]], 8), T_, "images"),
    ("pad_centred/non-square", lambda: pad_centred(torch.zeros(2, 1, 8, 6), 10), V, "images"),
    ("load_mnist/split", lambda: load_mnist("val"), V, "split"),
    ("load_mnist/limit 0", lambda: load_mnist(limit=0), V, "limit"),
    ("load_mnist/pad odd", lambda: load_mnist(pad_to=29, limit=4), V, "pad_to"),
    ("load_digits/pad", lambda: load_digits_tensor(pad_to=9), V, "pad_to"),
    ("resolve/dataset int", lambda: resolve_image_size(5), T_, "dataset"),
    ("resolve/channels", lambda: resolve_image_size("mnist", channels=3), V, "channels must be 1"),
    ("resolve/folder size", lambda: resolve_image_size("my_folder"), V, "image_size is required"),
    ("resolve/size 0", lambda: resolve_image_size("my_folder", 0), V, "image_size"),
    ("load_dataset/name", lambda: load_dataset("cifar10"), V, "dataset"),
    ("load_dataset/digits test", lambda: load_dataset("digits", split="test"), V, "split must be 'train'"),
    ("resize/size 0", lambda: resize_center_crop(M().img, 0), V, "size"),
    ("resize/img str", lambda: resize_center_crop("img.png", 8), T_, "img must be a PIL image"),
    ("to_mode/channels 2", lambda: to_mode(M().img, 2), V, "channels"),
    ("to_mode/img str", lambda: to_mode("img.png", 1), T_, "img must be a PIL image"),
    ("pil_to_tensor/str", lambda: pil_to_tensor("img.png"), T_, "img must be a PIL image"),
    ("pil_to_tensor/mode", lambda: pil_to_tensor(M().img.convert("CMYK")), V, "img must be an L or RGB"),
    ("folder/root int", lambda: ImageFolderDataset(5, 8), T_, "root"),
    ("folder/channels", lambda: ImageFolderDataset(_folder(), 8, channels=2), V, "channels"),
    ("folder/ext str", lambda: ImageFolderDataset(_folder(), 8, extensions="png"), V, "extensions"),
    ("folder/subfolder str", lambda: ImageFolderDataset(_folder(), 8, 1, class_from_subfolder="no"), T_, "class_from_subfolder"),
    ("folder/verify str", lambda: ImageFolderDataset(_folder(), 8, 1, verify="no"), T_, "verify"),
    ("folder/size 0", lambda: ImageFolderDataset(_folder(), 0), V, "image_size"),
    ("batch_idx/B > n", lambda: batch_indices(0, 10, 11, 0), V, "batch_size"),
    ("batch_idx/world", lambda: batch_indices(0, 10, 4, 0, world_size=3), V, "divisible by the number of processes"),
    ("batch_idx/rank", lambda: batch_indices(0, 10, 4, 0, rank=2, world_size=2), V, "rank"),
    ("batch_idx/seed -1", lambda: batch_indices(0, 10, 4, -1), V, "seed"),
    ("batch_idx/seed float", lambda: batch_indices(0, 10, 4, 1.5), T_, "seed"),
    ("batch_idx/step -1", lambda: batch_indices(-1, 10, 4, 0), V, "step"),
    ("batches/name", lambda: ImageBatches("no_such_folder_xyz", 8), V, "dataset must be"),
    ("batches/sizes str", lambda: ImageBatches("digits", sizes="x"), T_, "sizes"),
    ("batches/sizes value str", lambda: ImageBatches("digits", sizes={"n_fd": "a"}), T_, "n_fd"),
    ("batches/sizes big", lambda: ImageBatches("digits", sizes={"n_fd": 10 ** 6}), V, "n_fd"),
    ("stream/data", lambda: batch_stream("digits", 0, 2, 4, 0), T_, "data must be an ImageBatches"),
    ("stream/stop", lambda: batch_stream(M().batches, 3, 2, 4, 0), V, "stop"),
    ("stream/workers", lambda: batch_stream(M().batches, 0, 2, 4, 0, num_workers=-1), V, "num_workers"),
    ("stream/batch", lambda: batch_stream(M().batches, 0, 2, 0, 0), V, "batch_size"),
    ("mnist_path/int", lambda: mnist_path(5), T_, "package"),
    # --- 14 metrics -----------------------------------------------------------------------------------------------
    ("prepare/channels", lambda: prepare_digits(torch.zeros(2, 3, 28, 28)), V, "images must have shape"),
    ("prepare/empty", lambda: prepare_digits(_empty(1, 28, 28)), V, "images is empty"),
    ("prepare/nan", lambda: prepare_digits(torch.full((1, 1, 28, 28), nan)), V, "images must be finite"),
    ("prepare/range", lambda: prepare_digits(torch.full((1, 1, 28, 28), 2.)), V, "images must lie in [-1, 1]"),
    ("prepare/int", lambda: prepare_digits(torch.zeros(1, 1, 28, 28, dtype=torch.long)), T_, "images"),
    ("mnistclf/feat 0", lambda: MNISTClassifier(feat_dim=0), V, "feat_dim"),
    ("mnistclf/classes 0", lambda: MNISTClassifier(n_classes=0), V, "n_classes"),
    ("mnistclf/float64", lambda: M().mnist_clf(M().digits.double()), T_, "images must have the model's dtype"),
    ("recipe/steps 0", lambda: ClassifierRecipe(steps=0), V, "steps"),
    ("recipe/lr nan", lambda: ClassifierRecipe(lr=nan), V, "lr"),
    ("recipe/n_train", lambda: ClassifierRecipe(n_train=10), V, "n_train"),
    ("recipe_hash/str", lambda: recipe_hash("recipe"), T_, "recipe must be a ClassifierRecipe"),
    ("accuracy/labels float", lambda: classifier_accuracy(M().mnist_clf, M().digits, torch.zeros(4)), T_, "labels"),
    ("accuracy/len", lambda: classifier_accuracy(M().mnist_clf, M().digits, torch.zeros(3, dtype=torch.long)), V, "one entry per image"),
    ("accuracy/clf str", lambda: classifier_accuracy("clf", M().digits, torch.zeros(4, dtype=torch.long)), T_, "clf must be an MNISTClassifier"),
    ("accuracy/batch 0", lambda: classifier_accuracy(M().mnist_clf, M().digits, torch.zeros(4, dtype=torch.long), 0), V, "batch_size"),
    ("feature_stats/1 row", lambda: feature_stats(torch.zeros(1, 3)), V, "at least 2 rows"),
    ("feature_stats/3-D", lambda: feature_stats(torch.zeros(2, 3, 1)), V, "feats must have 2 dims"),
    ("feature_stats/list", lambda: feature_stats([[0., 1.]]), T_, "feats"),
    ("fd/mu nan", lambda: frechet_distance(torch.full((3,), nan), M().sig, M().mu, M().sig), V, "mu1 must be finite"),
    ("fd/mu2 inf", lambda: frechet_distance(M().mu, M().sig, torch.full((3,), inf), M().sig), V, "mu2 must be finite"),
    ("fd/sigma nan", lambda: frechet_distance(M().mu, torch.full((3, 3), nan), M().mu, M().sig), V, "sigma1"),
    ("fd/sigma asym", lambda: frechet_distance(M().mu, torch.triu(torch.ones(3, 3)), M().mu, M().sig), V, "sigma1 must be a finite symmetric"),
    ("fd/shapes", lambda: frechet_distance(M().mu, M().sig, torch.zeros(4), M().sig), V, "mu2 must have shape"),
    ("fd/mu str", lambda: frechet_distance("mu", M().sig, M().mu, M().sig), T_, "mu1"),
    ("features/clf str", lambda: classifier_features(M().digits, "clf"), T_, "clf"),
    ("fd_score/reference", lambda: fd_score(M().digits, "ref", M().mnist_clf), T_, "reference"),
    ("fd_floor/n 1", lambda: fd_floor(1, M().mnist_clf), V, "n must be >= 2"),
    ("fd_floor/clf str", lambda: fd_floor(10, "clf"), T_, "clf must be an MNISTClassifier"),
    ("coverage/clf str", lambda: class_coverage(M().digits, "clf"), T_, "clf"),
    ("psnr/empty", lambda: psnr(_empty(1, 4, 4), _empty(1, 4, 4)), V, "x must have at least one item"),
    ("psnr/range 0", lambda: psnr(M().x, M().x, 0.), V, "data_range"),
    ("psnr/shape", lambda: psnr(M().x, M().x[:1]), V, "same shape"),
    ("psnr/int", lambda: psnr(M().x.long(), M().x), T_, "x must be a floating"),
]

# Legal or borderline calls that must not return NaN or inf: either a finite result or a clear error.
NAN_CASES = [
    ("ddpm loss, tiny batch", lambda: M().ddpm(M().x[:1])[0]),
    ("ddim sample, eta 1, S = T", lambda: M().ddim.sample(M().x.shape, 20, eta=1., progress=False, generator=torch.Generator().manual_seed(0))),
    ("cfg DDIM, scale 1e3", lambda: DDIMSampler(M().ddpm_cls, classifier_free_model_fn(M().ddpm_cls.apply_model, {"y": M().lab}, {"y": torch.tensor([0])}, 1e3)).sample(M().x.shape, 10, progress=False)),
    ("cfg DDPM, scale -1e3", lambda: M().ddpm_cls.p_sample_loop(M().x.shape, progress=False, model_fn=classifier_free_model_fn(M().ddpm_cls.apply_model, {"y": M().lab}, {"y": torch.tensor([0])}, -1e3))),
    ("ldm sample, scale 1e3", lambda: M().ldm.sample_images(M().lab, sample_steps=5, guidance_scale=1e3, clamp=False)),
    ("ldm sample, scale -1e3, ddpm", lambda: M().ldm.sample_images(M().lab, "ddpm", guidance_scale=-1e3, clamp=False)),
    ("classifier guidance, scale 1e3", lambda: DDIMSampler(M().ddpm, classifier_guided_model_fn(M().ddpm.apply_model, M().clf, M().lab, 1e3, M().ddpm.schedule)).sample(M().x.shape, 10, progress=False)),
    ("actnorm, constant channel", lambda: ActNorm(1).train()(torch.ones(2, 1, 2, 2))),
    ("psnr, identical", lambda: psnr(M().x, M().x)[0].clamp(max=1e9)),
    ("schedule, cosine T=2", lambda: torch.stack([v.double() for v in NoiseSchedule("cosine", 2).buffers()])),
    ("schedule, sqrt_linear near 1", lambda: torch.stack([v.double() for v in NoiseSchedule("sqrt_linear", 5, 0.5, 0.999).buffers()])),
    ("lvlb weights, v_posterior 1", lambda: lvlb_weights(NoiseSchedule("linear", 10, v_posterior=1.))),
    ("ddim_sigmas, S = T", lambda: torch.cat(ddim_sigmas(M().sched.alphas_cumprod, torch.arange(20), 1.))),
    ("noisy classifier loss", lambda: noisy_classifier_loss(M().clf, M().sched, M().x, M().lab)),
    ("disc loss, one logit", lambda: hinge_d_loss(torch.zeros(1, 1), torch.zeros(1, 1))),
]


def _outputs(out):
    "Every floating tensor in `out` (nested tuples, lists, dicts)."
    if isinstance(out, torch.Tensor): return [out] if out.is_floating_point() else []
    if isinstance(out, (tuple, list)): return [t for o in out for t in _outputs(o)]
    if isinstance(out, dict): return [t for o in out.values() for t in _outputs(o)]
    if isinstance(out, float): return [torch.tensor(out)]
    return []


def _finite(out) -> bool: return all(torch.isfinite(t.detach()).all() for t in _outputs(out))


def classify(fn, exc=None, contains=None) -> tuple[str, str]:
    "(outcome, detail) of calling `fn`: clear, odd-type, unclear, nan or accepted."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
            if hasattr(out, "__next__"): out = next(out)       # a lazy iterator: its first item
    except Exception as e:
        msg = " ".join(str(e).split())
        if exc is not None and isinstance(e, exc) and contains in msg: return "clear", msg
        if isinstance(e, (ValueError, TypeError)) and exc is None: return "clear", msg
        if contains is not None and contains in msg: return "odd-type", f"{type(e).__name__}: {msg}"
        return "unclear", f"{type(e).__name__}: {msg}"[:300]
    return ("accepted" if _finite(out) else "nan"), ""


@pytest.mark.parametrize("name,fn,exc,contains", CASES, ids=[c[0] for c in CASES])
def test_bad_call(name, fn, exc, contains):
    with pytest.raises(exc) as e:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
            if hasattr(out, "__next__"): next(out)
    assert contains in " ".join(str(e.value).split()), str(e.value)


@pytest.mark.parametrize("name,fn", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_no_silent_nan(name, fn):
    "A clear ValueError/TypeError is fine; a NaN or inf output is not."
    outcome, detail = classify(fn)
    assert outcome in ("clear", "accepted"), (outcome, detail)


def test_table_size():
    assert len(CASES) >= 150 and len({c[0] for c in CASES}) == len(CASES)


if __name__ == "__main__":
    verbose = "-v" in sys.argv
    counts = {k: 0 for k in ("clear", "odd-type", "unclear", "nan", "accepted")}
    for name, fn, exc, contains in CASES:
        outcome, detail = classify(fn, exc, contains)
        counts[outcome] += 1
        if verbose and outcome != "clear": print(f"{outcome:9s} {name}: {detail}")
    nan_counts = {k: 0 for k in ("clear", "accepted", "nan", "unclear", "odd-type")}
    for name, fn in NAN_CASES:
        outcome, detail = classify(fn)
        nan_counts[outcome] += 1
        if verbose and outcome not in ("clear", "accepted"): print(f"{outcome:9s} [nan case] {name}: {detail}")
    print(f"{len(CASES)} bad calls: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"  ({100 * counts['clear'] / len(CASES):.0f} % clear)")
    print(f"{len(NAN_CASES)} must-not-NaN calls: " + ", ".join(f"{k} {v}" for k, v in nan_counts.items()))

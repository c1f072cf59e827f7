"""Checkpoints written by the code before the redesign (tests/fixtures/v1) still load, and resume as that code resumed them.

Each folder was trained for 2 steps by commit c85db1e; `resumed_step4.json` holds what that code wrote after
resuming to step 4 (a SHA-256 per key head and the losses), and `resumed_step4_{ddpm,ldm}.safetensors` the tensors
themselves (written by commit a30677f, whose hashes equal c85db1e's). Today's `ldm-nb` resumes copies of the folders
to step 4. The autoencoder's code is unchanged since, so its checkpoint must match bit for bit. The UNet's attention
and 1x1 projections now run as matmuls on (B, N, C) (issue 11): the same function, summed in another order, so the
DDPM and LDM tensors that training touched agree to float32 rounding (observed max |difference| 2.8e-7), while
everything else (random-number state, step counters, the frozen first stage) still matches bit for bit. The
tolerance, 1e-5, is 200 times smaller than what one Adam step at lr 2e-3 moves a weight: a resume that lost a
step, the optimizer state or the random state fails it (checked below against the step-2 weights)."""
import json, shutil, subprocess, sys
from pathlib import Path
import pytest

FIX = Path(__file__).parent / "fixtures" / "v1"
EXPECTED = json.loads((FIX / "resumed_step4.json").read_text())

def heads(path) -> dict:
    "SHA-256 of each key head of a checkpoint (as hash_heads.py computes them)."
    import hashlib, torch
    from safetensors.torch import load_file
    out = {}
    for k, v in sorted(load_file(path).items()):
        h = out.setdefault(k.split(".")[0], hashlib.sha256())
        h.update(k.encode()); h.update(v.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return {k: h.hexdigest() for k, h in out.items()}

COMMANDS = {"ddpm": ["train"], "vae": ["train-vae"], "ldm": ["train-ldm", "--first-stage", "{vae}"]}

@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    "Copies of the three fixture folders, each resumed from step 2 to step 4 by today's code."
    root = tmp_path_factory.mktemp("fixtures")
    for kind in ("ddpm", "vae", "ldm"): shutil.copytree(FIX / kind, root / kind)
    shutil.copytree(FIX / "vae", root / "vae_untouched")        # the LDM's first stage, as it was at step 2
    env = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"}
    for kind, cmd in COMMANDS.items():
        cmd = [c.format(vae=root / "vae_untouched") for c in cmd]
        r = subprocess.run([sys.executable, "-m", "ldm_nb", *cmd, "--run-dir", str(root / kind), "--steps", "4", "--resume",
                            "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, (kind, r.stdout, r.stderr[-3000:])
    return root

TRAINED = {"ddpm": {"model", "ema", "optim"}, "ldm": {"model", "ema", "optim", "cond"}, "vae": set()}
ATOL = 1e-5      # float32 rounding of a reordered sum, far below one Adam step (lr 2e-3)

def max_diff(a: dict, b: dict, head: str) -> float:
    keys = [k for k in a if k.split(".")[0] == head]
    assert keys and set(keys) == {k for k in b if k.split(".")[0] == head}, head
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0. for k in keys)

@pytest.mark.parametrize("kind", ["ddpm", "vae", "ldm"])
def test_old_checkpoint_resumes_as_before(resumed, kind):
    from safetensors.torch import load_file
    path = resumed / kind / "checkpoints" / "last.safetensors"
    got, want = heads(path), EXPECTED[kind]["heads"]
    assert set(got) == set(want)
    assert {k for k in got if got[k] != want[k]} <= TRAINED[kind]          # everything else bit for bit
    if TRAINED[kind]:
        sd, ref = load_file(path), load_file(FIX / f"resumed_step4_{kind}.safetensors")
        assert heads(FIX / f"resumed_step4_{kind}.safetensors") == want         # the reference is c85db1e's
        for h in TRAINED[kind]: assert max_diff(sd, ref, h) <= ATOL, (h, max_diff(sd, ref, h))
        step2 = load_file(FIX / kind / "checkpoints" / "last.safetensors")      # the check can fail:
        assert max_diff(step2, ref, "model") > 100 * ATOL                       # two lost steps are far outside it
    lines = [json.loads(l) for l in (resumed / kind / "metrics.jsonl").read_text().splitlines()]
    got_m = [{k: v for k, v in l.items() if k != "seconds"} for l in lines]
    if not TRAINED[kind]: assert got_m == EXPECTED[kind]["metrics"]
    assert [{k: v for k, v in l.items() if k != "loss" and not k.startswith("loss_")} for l in got_m] == \
           [{k: v for k, v in l.items() if k != "loss" and not k.startswith("loss_")} for l in EXPECTED[kind]["metrics"]]
    for g, e in zip(got_m, EXPECTED[kind]["metrics"]):
        for k in e:
            if k == "loss" or k.startswith("loss_"): assert abs(g[k] - e[k]) <= 1e-5 * abs(e[k]), (k, g[k], e[k])

def test_old_checkpoints_load_with_the_api():
    from ldm_nb.train_ddpm import load_checkpoint
    from ldm_nb.train_vae import load_autoencoder
    from ldm_nb.train_ldm import load_ldm
    ck = load_checkpoint(FIX / "ddpm" / "checkpoints" / "last.safetensors")
    assert ck["step"] == 2 and ck["config"].unet.model_channels == 8
    ae, info = load_autoencoder(FIX / "vae")
    assert info["step"] == 2 and ae.cfg.ch == 8
    ldm, info = load_ldm(FIX / "ldm" / "checkpoints" / "last.safetensors")
    assert info["step"] == 2 and ldm.cfg.num_classes == 10

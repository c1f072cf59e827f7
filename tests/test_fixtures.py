"""Checkpoints written by the code before the redesign (tests/fixtures/v1) still load, and resume to the same bits.

Each folder was trained for 2 steps by commit c85db1e; `resumed_step4.json` holds what that code wrote after
resuming to step 4. Today's `ldm-nb` resumes copies of the folders to step 4 and must write the same tensors
(a SHA-256 per key head) and the same losses."""
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

@pytest.mark.parametrize("kind", ["ddpm", "vae", "ldm"])
def test_old_checkpoint_resumes_bit_for_bit(resumed, kind):
    got = heads(resumed / kind / "checkpoints" / "last.safetensors")
    assert got == EXPECTED[kind]["heads"], [k for k in got if got.get(k) != EXPECTED[kind]["heads"].get(k)]
    lines = [json.loads(l) for l in (resumed / kind / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in l.items() if k != "seconds"} for l in lines] == EXPECTED[kind]["metrics"]

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

"""What the tests share: the tiny configs (as command-line flags), running `ldm-nb`, and the one-line error check.
Everything is tiny (sklearn's 8x8 digits, 16-channel networks, T = 50) and on the CPU."""
import os, subprocess, sys
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent / "ldm-nb"
LDM = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "ldm_nb"]     # the console script
MOD = [sys.executable, "-m", "ldm_nb"]                                      # python -m ldm_nb
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
DUMP = str(Path(__file__).with_name("dump_ranks.py"))                       # runs ldm-nb and dumps each rank's weights

TINY_DDPM = ["--dataset", "digits", "--batch-size", "32", "--lr", "2e-3", "--model-channels", "16", "--channel-mult", "1,2",
             "--attention-resolutions", "", "--no-mid-attention", "--num-heads", "1", "--timesteps", "50", "--ema-decay", "0.9",
             "--log-every", "1", "--ckpt-every", "2", "--sample-every", "0", "--n-sample", "4", "--no-progress"]
TINY_VAE = ["--dataset", "digits", "--batch-size", "32", "--lr", "2e-3", "--ch", "16", "--ch-mult", "1,2", "--num-groups", "8",
            "--z-channels", "2", "--embed-dim", "2", "--disc-num-layers", "1", "--disc-ndf", "16", "--disc-start", "2",
            "--log-every", "1", "--ckpt-every", "2", "--sample-every", "0", "--n-sample", "8", "--no-progress"]
TINY_LDM = ["--dataset", "digits", "--batch-size", "32", "--lr", "2e-3", "--model-channels", "16", "--channel-mult", "1,2",
            "--attention-resolutions", "", "--mid-attention", "--num-heads", "1", "--timesteps", "50", "--ema-decay", "0.9",
            "--cond-embed-dim", "16", "--log-every", "1", "--ckpt-every", "2", "--sample-every", "0", "--n-sample", "2",
            "--sample-steps", "5", "--scale-images", "256", "--no-progress"]

def ckpt(run_dir) -> Path: return Path(run_dir) / "checkpoints" / "last.safetensors"

def run(cmd, *args, check=None, env=None):
    "Run a command (a list) with `args` in a subprocess; with `check`, assert its exit status."
    r = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env or ENV, timeout=180)
    if check is not None: assert r.returncode == check, (r.returncode, r.stdout, r.stderr[-3000:])
    return r

def run_many(cmds, env=None):
    "Start the commands together (they are mostly import time), return (process, stdout, stderr) in order."
    ps = [subprocess.Popen([*map(str, c)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV) for c in cmds]
    return [(p, *p.communicate(timeout=180)) for p in ps]

def main(*argv) -> int:
    "`ldm-nb ARGV` in this process; returns the exit status."
    from ldm_nb.cli import main as cli_main
    return cli_main([str(a) for a in argv])

def assert_one_line_error(rc, err, contains):
    "Exit status 2, one line `ldm-nb: error: ...` on stderr containing `contains`, no traceback."
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ldm-nb: error: "), err
    assert "Traceback" not in err and contains in lines[0], (contains, err)

def snapshot(run_dir) -> dict:
    "Bytes of every file of a run folder."
    return {p: p.read_bytes() for p in sorted(Path(run_dir).rglob("*")) if p.is_file()}

@pytest.fixture
def one_line_error(capsys):
    "`one_line_error(rc, contains)`: the in-process form of `assert_one_line_error`, reading captured stderr."
    return lambda rc, contains: assert_one_line_error(rc, capsys.readouterr().err, contains)

"""A run folder has one writer: a second `ldm-nb train` on a folder that a running one holds is refused with one line
naming the holder's PID, exit status 2, nothing written; the lock goes with its process, even on SIGKILL."""
import os, signal, subprocess, time
from pathlib import Path
from conftest import LDM, ENV, TINY_DDPM, ckpt, run, snapshot, assert_one_line_error

def test_second_writer_is_refused_and_kill_releases(tmp_path):
    d = tmp_path / "busy"
    quiet = [*TINY_DDPM, "--log-every", "100000", "--ckpt-every", "100000"]      # A writes nothing while it trains
    a = subprocess.Popen([*LDM, "train", "--run-dir", str(d), "--steps", "100000", *quiet],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        t0 = time.time()
        while not ((d / ".lock").exists() and (d / "config.json").exists() and (d / ".lock").read_text().strip()):
            assert a.poll() is None and time.time() - t0 < 120, "the first run did not start"; time.sleep(0.05)
        before = snapshot(d)
        assert (d / ".lock").read_text().strip() == str(a.pid)
        b = run(LDM, "train", "--run-dir", d, "--steps", 3, *TINY_DDPM)            # a second fresh run on the same folder
        assert_one_line_error(b.returncode, b.stderr, f"is in use by another process (PID {a.pid})")
        b = run(LDM, "train", "--run-dir", d, "--steps", 3, "--overwrite", *TINY_DDPM)
        assert_one_line_error(b.returncode, b.stderr, f"(PID {a.pid})")
        assert snapshot(d) == before                                              # the refused ones wrote nothing
    finally:
        a.send_signal(signal.SIGKILL); a.wait()
    r = run(LDM, "train", "--run-dir", d, "--steps", 3, "--overwrite", *TINY_DDPM)   # the kernel released the lock
    assert r.returncode == 0, r.stderr[-2000:]
    assert ckpt(d).exists() and (d / ".lock").read_text().strip() != str(a.pid)

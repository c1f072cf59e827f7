"""`python dump_ranks.py DUMP_DIR ldm-nb ARGS...` (under torchrun): run `ldm-nb ARGS`, and at the end of training every
rank writes the weights it holds to DUMP_DIR/rank{RANK}.safetensors (through `run_training`'s `on_end` callback)."""
import os, sys
from pathlib import Path
import ldm_nb.runs, ldm_nb.train_ddpm, ldm_nb.train_ldm
from ldm_nb.checkpoint import state_tensors
from ldm_nb.cli import main

def dump(trainer) -> None:
    from safetensors.torch import save_file
    if hasattr(trainer, "ldm"):
        ldm = trainer.ldm
        t = {**state_tensors(ldm.model, "model."), **state_tensors(ldm.cond_stage_model, "cond.")}
        if ldm.model_ema is not None: t.update(state_tensors(ldm.model_ema.shadow, "ema."))
    else: t = {**state_tensors(trainer.net, "model."), **state_tensors(trainer.ema.shadow if trainer.ema else None, "ema.")}
    d = Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)
    save_file(t, d / f"rank{trainer.rank}.safetensors")

def with_dump(run_training):
    return lambda trainer, resume=False, overwrite=False, progress=True, on_end=None: run_training(trainer, resume, overwrite, progress, dump)

for mod in (ldm_nb.train_ddpm, ldm_nb.train_ldm): mod.run_training = with_dump(ldm_nb.runs.run_training)
if __name__ == "__main__": sys.exit(main(sys.argv[2:]))

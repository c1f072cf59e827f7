"""Build a notebook from a plain-text script: cells separated by lines `%% md` / `%% code` (used to write chapters)."""
from __future__ import annotations
import sys
from pathlib import Path
from nbedit import cell, save

def build(text: str) -> dict:
    cells, kind, buf = [], None, []
    for line in text.splitlines():
        if line.startswith("%% ") and line[3:].strip() in ("md", "code"):
            if kind: cells.append(cell("markdown" if kind == "md" else "code", "\n".join(buf)))
            kind, buf = line[3:].strip(), []
        else: buf.append(line)
    if kind: cells.append(cell("markdown" if kind == "md" else "code", "\n".join(buf)))
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}

if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    save(build(Path(src).read_text()), dst)

"""Small helpers to edit notebooks from scripts: find cells, replace their source, insert cells (used while restructuring)."""
from __future__ import annotations
import json, secrets
from pathlib import Path

def load(path) -> dict: return json.loads(Path(path).read_text())

def save(nb: dict, path) -> None:
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")

def src(cell) -> str: return "".join(cell["source"])

def find(nb, needle: str, kind: str | None = None) -> int:
    "Index of the one cell whose id is `needle` or whose source contains it."
    hits = [i for i, c in enumerate(nb["cells"]) if (c.get("id") == needle or needle in src(c)) and (kind is None or c["cell_type"] == kind)]
    if len(hits) != 1: raise ValueError(f"{needle!r}: {len(hits)} cells match")
    return hits[0]

def cell(kind: str, text: str) -> dict:
    c = {"cell_type": kind, "id": secrets.token_hex(4), "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}
    if kind == "code": c.update(execution_count=None, outputs=[])
    return c

def insert(nb, at: int, *cells) -> None:
    for j, c in enumerate(cells): nb["cells"].insert(at + j, c)

def set_src(nb, i: int, text: str, clear: bool = True) -> None:
    c = nb["cells"][i]; c["source"] = text.strip("\n").splitlines(keepends=True)
    if clear and c["cell_type"] == "code": c["outputs"] = []; c["execution_count"] = None

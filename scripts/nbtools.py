"""Shared helpers for the scripts that turn nbdev notebooks into the README and the book."""
from __future__ import annotations
import re
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
_DIRECTIVE = re.compile(r"^\s*#\|\s*(.*)$")

def split_directives(source: str) -> tuple[list[str], str]:
    "Split the leading `#| ...` directive lines of a code cell from the rest of its source."
    lines, dirs = source.split("\n"), []
    while lines and (m := _DIRECTIVE.match(lines[0])):
        dirs.append(m.group(1).strip()); lines.pop(0)
    # nbdev also accepts directives after blank/comment lines at the top; strip any left anywhere
    rest = [l for l in lines if not _DIRECTIVE.match(l)]
    return dirs, "\n".join(rest).strip("\n")

def directive_names(dirs: list[str]) -> set[str]:
    "The directive keywords (`export`, `hide`, `slow`, `eval:` ...) of a cell."
    return {d.split()[0].rstrip(":") for d in dirs if d}

def quarto_chapters(path: Path = ROOT / "_quarto.yml") -> list[tuple[str | None, list[str]]]:
    "[(part title or None, [notebook paths])] in book order, read from `_quarto.yml`."
    book = yaml.safe_load(path.read_text())["book"]
    out: list[tuple[str | None, list[str]]] = []
    for item in book["chapters"]:
        if isinstance(item, str): out.append((None, [item]))
        else: out.append((item["part"], list(item["chapters"])))
    return out

def book_title(path: Path = ROOT / "_quarto.yml") -> str:
    return yaml.safe_load(path.read_text())["book"]["title"]

"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which cannot be installed offline).
Markdown cells are copied; code cells become ```python blocks (hidden cells dropped, `#|` lines removed)."""
from __future__ import annotations
import re, sys
import nbformat
from nbtools import ROOT, split_directives, directive_names

def repo_links(md: str) -> str:
    "Links written for the book (relative to nbs/) made relative to the repository root, where README.md lives."
    md = re.sub(r"\]\(\.\./", "](", md)                                  # ../benchmarks/x.png -> benchmarks/x.png
    md = re.sub(r"\]\(([\w-]+\.ipynb)\)", r"](nbs/\1)", md)                # 06_ddpm.ipynb -> nbs/06_ddpm.ipynb
    return md.replace("](references.md)", "](nbs/references.bib)")          # the book's References page is built from it

def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = ["<!-- generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook, not this file -->"]
    for c in nb.cells:
        if c.cell_type == "markdown": parts.append(repo_links(c.source.strip()))
        elif c.cell_type == "code":
            dirs, src = split_directives(c.source)
            if {"hide", "exec_doc", "default_exp"} & directive_names(dirs) or not src.strip(): continue
            parts.append(f"```python\n{src}\n```")
    return "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    out = ROOT / "README.md"
    text = render()
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `python scripts/make_readme.py`")
    else:
        out.write_text(text)

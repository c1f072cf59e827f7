"""Render the book with jupyter-book 1.x from the chapter list in `_quarto.yml`.

Quarto (nbdev's own renderer) cannot be installed offline, so this script does what nbdev's Quarto
processors would: it stages a copy of each notebook in `_build/book_src` with the nbdev directive lines
removed, `#| hide` cells dropped, the signature and docstring of every exported function/class shown
after the cell that defines it, and a note on `#| slow` / `#| gpu` cells; then it runs
`jupyter-book build` (warnings are errors) without executing anything: the notebooks' own saved outputs
are the book (`make execute` refreshes them). MathJax is served from the local `sphinx-mathjax-offline`
wheel so the math renders with no internet. Output: `_build/html`.
"""
from __future__ import annotations
import ast, importlib, inspect, re, shutil, subprocess, sys
from importlib import metadata
from pathlib import Path
import nbformat, yaml
from nbtools import ROOT, split_directives, directive_names, quarto_chapters, book_title

SRC, OUT = ROOT / "_build" / "book_src", ROOT / "_build" / "html"
FLAG_NOTE = {"slow": "runs only with `nbdev-test --flags slow` (long training)",
             "gpu": "runs only with `nbdev-test --flags gpu` (needs a GPU)"}

def _fmt_sig(obj, width: int = 88) -> str:
    "The signature as source text; one parameter a line when it is long."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return "(...)"
    unq = lambda s: re.sub(r"'([^']*)'", r"\1", s)   # string annotations (from __future__) without quotes
    flat = unq(str(sig))
    if len(flat) <= width: return flat
    ret = "" if sig.return_annotation is inspect.Signature.empty else f" -> {unq(repr(sig.return_annotation)) if not isinstance(sig.return_annotation, str) else sig.return_annotation}"
    params = unq(str(sig.replace(return_annotation=inspect.Signature.empty)))[1:-1]
    # split on top-level commas only
    parts, depth, cur = [], 0, ""
    for ch in params:
        depth += ch in "([{" ; depth -= ch in ")]}"
        if ch == "," and depth == 0: parts.append(cur.strip()); cur = ""
        else: cur += ch
    parts.append(cur.strip())
    return "(\n" + "".join(f"    {p},\n" for p in parts if p) + ")" + ret

def _doc(obj) -> str:
    d = inspect.getdoc(obj) or ""
    return d.strip()

def api_markdown(mod, names: list[str]) -> str | None:
    "Markdown that shows the signature and docstring of each exported name (nbdev's show_doc, rendered statically)."
    blocks = []
    for n in names:
        obj = getattr(mod, n, None)
        if obj is None or not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
        kind = "class" if inspect.isclass(obj) else "def"
        lines = [f"```python\n{kind} {n}{_fmt_sig(obj)}\n```", _doc(obj)]
        if inspect.isclass(obj):
            for mn, m in vars(obj).items():
                if mn.startswith("_") or not callable(m) or not _doc(m): continue
                lines.append(f"- `{n}.{mn}{_fmt_sig(m)}`: {_doc(m).splitlines()[0]}")
        blocks.append(":::{admonition} " + f"`{n}`\n:class: api\n" + "\n\n".join(l for l in lines if l) + "\n:::")
    return "\n\n".join(blocks) or None

def exported_names(src: str) -> list[str]:
    try: tree = ast.parse(src)
    except SyntaxError: return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            out.append(node.name)
    return out

def _is_progress(out) -> bool:
    return out.get("output_type") == "stream" and out.get("name") == "stderr" and ("it/s]" in out.get("text", "") or "s/it]" in out.get("text", "") or "%|" in out.get("text", ""))

def stage_notebook(src: Path, dst: Path) -> None:
    nb = nbformat.read(src, as_version=4)
    mod, cells = None, []
    for c in nb.cells:
        if c.cell_type != "code": cells.append(c); continue
        dirs, code = split_directives(c.source)
        names = directive_names(dirs)
        for d in dirs:
            if d.startswith("default_exp"): mod = importlib.import_module(f"ldm_nb.{d.split()[1]}")
        if "hide" in names or "default_exp" in names and not code.strip(): continue
        if not code.strip(): continue
        for flag, note in FLAG_NOTE.items():
            if flag in names: cells.append(nbformat.v4.new_markdown_cell(f"*The next cell {note}.*"))
        c.source = code
        c.outputs = [o for o in c.get("outputs", []) if not _is_progress(o)]
        cells.append(c)
        if "export" in names and mod is not None and (md := api_markdown(mod, exported_names(code))):
            cells.append(nbformat.v4.new_markdown_cell(md))
    nb.cells = cells
    nbformat.write(nb, dst)

def main() -> None:
    if SRC.exists(): shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    parts, root = [], None
    for part, chapters in quarto_chapters():
        files = []
        for ch in chapters:
            p = ROOT / ch
            if not p.exists(): sys.exit(f"_quarto.yml lists {ch}, which does not exist")
            stage_notebook(p, SRC / p.name); files.append({"file": p.stem})
        if part is None and root is None and len(files) == 1: root = files[0]["file"]; continue
        parts.append({"caption": part or "Chapters", "chapters": files})
    (SRC / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": root, "parts": parts}, sort_keys=False))
    config = {
        "title": book_title(), "author": "the ldm_nb team", "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"]},
        "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False},
        "sphinx": {"config": {"mathjax_path": "mathjax/tex-chtml.js", "html_show_copyright": False,
                              "nb_merge_streams": True, "nb_render_markdown_format": "myst",
                              "suppress_warnings": ["mystnb.unknown_mime_type"]}},
    }
    (SRC / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    jb = Path(sys.executable).parent / "jupyter-book"
    r = subprocess.run([str(jb), "build", str(SRC), "--builder", "html", "-W", "-n", "--keep-going", "--quiet"])
    if r.returncode: sys.exit(f"jupyter-book build failed (exit {r.returncode})")
    if OUT.exists(): shutil.rmtree(OUT)
    shutil.copytree(SRC / "_build" / "html", OUT)
    # MathJax from the sphinx-mathjax-offline wheel (its folder name has a hyphen, so it is not importable)
    mj = [f for f in metadata.files("sphinx-mathjax-offline") if str(f).endswith("static/mathjax/tex-chtml.js")]
    if not mj: sys.exit("sphinx-mathjax-offline is installed without its MathJax files")
    shutil.copytree(Path(mj[0].locate()).parent, OUT / "_static" / "mathjax", dirs_exist_ok=True)
    print(f"book written to {OUT.relative_to(ROOT)}/index.html")

if __name__ == "__main__":
    main()

"""Render the book with jupyter-book 1.x from the chapter list in `_quarto.yml`.

Quarto (nbdev's own renderer) cannot be installed offline, so this script does what nbdev's Quarto
processors would: it stages a copy of each notebook in `_build/book_src` with the nbdev directive lines
removed and `#| hide` cells dropped; after each exported cell an API block (our static show_doc) with the
object's own docstring (`*`, `_` literal) and, for a class, its methods, `@patch`ed ones included; the
signature only where the source is not on the page; every API name in the book's index. Scaffolding is
folded behind a toggle (`hide-input`): cells that are mostly bad-input checks (`test_fail`) or, when they show
nothing, shape checks and unit tests (a proof prints what it measured, so it stays open); a proof's trailing
`test_fail` lines fold into a cell of their own; an exported cell of imports only or of private input checks
(`_check_*`); `#| fold` folds any cell, `#| show` keeps one open. A note for the reader goes before `#| slow` /
`#| gpu` cells. Every "chapter NN" of the prose becomes a link; images outside nbs/ are copied in; papers cited
with `{cite:p}` are listed on a References page built from nbs/references.bib (sphinxcontrib-bibtex). The
sidebar numbers the chapters as the prose cites them (04, 15a). Then it runs `jupyter-book build` (warnings are errors, no
smartquotes) without executing anything: the notebooks' own saved outputs are the book (`make execute`
refreshes them). `book_static/` (CSS: a wide column, wrapped code and outputs; JS: display equations scaled
to fit the column) goes into `_static`; MathJax (tex-chtml.js and its fonts only) comes from the local
`sphinx-mathjax-offline` wheel, so the math renders with no internet. Output: `_build/html`;
`scripts/measure_book.py` measures it as a reader sees it.
"""
from __future__ import annotations
import ast, dataclasses, importlib, inspect, re, shutil, subprocess, sys
from importlib import metadata
from pathlib import Path
import nbformat, yaml
from nbtools import ROOT, split_directives, directive_names, quarto_chapters, book_title

SRC, OUT = ROOT / "_build" / "book_src", ROOT / "_build" / "html"
STATIC = Path(__file__).resolve().parent / "book_static"     # book.css, book.js: copied into the book's _static
# The note before a cell the book's build does not run (the output shown is the one saved in the notebook).
FLAG_NOTE = {"slow": "This cell takes minutes to run, so building the book does not run it; its output below was "
                     "saved when it last ran.",
             "gpu": "This cell needs a GPU, so building the book does not run it; its output below was saved on a "
                    "machine with one."}
FLAG_NOTE_EMPTY = {"slow": "This cell takes minutes to run; building the book does not run it, so it shows no output here.",
                   "gpu": "This cell needs a GPU; building the book does not run it, so it shows no output here."}
# The MathJax files the pages load (measured with scripts/measure_book.py): the combined TeX->CHTML file and its fonts.
MATHJAX_FILES = ["tex-chtml.js", "output/chtml/fonts/woff-v2"]

# ---------------------------------------------------------------- API blocks (nbdev's show_doc, rendered statically)
def _ann(a) -> str:
    if a is inspect.Parameter.empty: return ""
    if isinstance(a, str): return a                               # `from __future__ import annotations`
    return inspect.formatannotation(a)

def _fmt_param(p: inspect.Parameter, annotations: bool = True) -> str:
    s = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
    if annotations and (a := _ann(p.annotation)): s += f": {a}"
    if p.default is not p.empty: s += (" = " if annotations and _ann(p.annotation) else "=") + repr(p.default)
    return s

def _params(sig: inspect.Signature, annotations: bool, drop_self: bool) -> list[str]:
    out, ps = [], list(sig.parameters.values())
    if drop_self and ps and ps[0].name in ("self", "cls"): ps = ps[1:]
    for i, p in enumerate(ps):
        if p.kind is p.KEYWORD_ONLY and (i == 0 or ps[i - 1].kind not in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)): out.append("*")
        out.append(_fmt_param(p, annotations))
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(ps) or ps[i + 1].kind is not p.POSITIONAL_ONLY): out.append("/")
    return out

def _fmt_sig(obj, width: int = 76, annotations: bool = True, drop_self: bool = False) -> str:
    "The signature as source text, defaults as `repr` (quotes kept); one parameter a line when longer than `width`."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return "(...)"
    params = _params(sig, annotations, drop_self)
    ret = f" -> {_ann(sig.return_annotation)}" if annotations and sig.return_annotation is not sig.empty else ""
    flat = f"({', '.join(params)}){ret}"
    if len(flat) <= width or not params: return flat
    return "(\n" + "".join(f"    {p},\n" for p in params) + ")" + ret

def own_doc(obj) -> str:
    "The object's own docstring: never one inherited from a base class (torch's `forward`, `nn.Module`)."
    if isinstance(obj, property): obj = obj.fget
    d = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(d, str): return ""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and d.startswith(f"{obj.__name__}("): return ""  # generated
    return inspect.cleandoc(d)

_ENV = re.compile(r"\$[A-Z_][A-Z0-9_]{2,}(?![\w$])")          # $LDM_NB_LPIPS_RANDOM_TRUNK: a variable, not math
_VERBATIM = re.compile(r"(``.+?``|`[^`]+`|\$[A-Z_][A-Z0-9_]{2,}(?![\w$])|\$\$.+?\$\$|\$[^$\n]+\$)", re.S)

def md_text(doc: str) -> str:
    "A docstring as MyST text: `*` and `_` are literal characters (not emphasis) outside code spans and $math$."
    parts = _VERBATIM.split(doc)
    return "".join((f"`{p}`" if _ENV.fullmatch(p) else p) if i % 2 else re.sub(r"([*_\\<])", r"\\\1", p)
                   for i, p in enumerate(parts))

def cell_objects(src: str) -> list[tuple[str, str, str | None]]:
    "The public objects a cell defines: (kind, name, patched class or None); kind is def, class or patch."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    out = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"): continue
        patched = [d for d in node.decorator_list if ast.unparse(d).split("(")[0] in ("patch", "patch_to")]
        if patched and not isinstance(node, ast.ClassDef):
            d = patched[0]
            if isinstance(d, ast.Call) and ast.unparse(d.func) == "patch_to" and d.args: cls = ast.unparse(d.args[0])
            else:
                a = node.args.posonlyargs + node.args.args
                cls = ast.unparse(a[0].annotation) if a and a[0].annotation is not None else None
            if cls: out.append(("patch", node.name, cls.split("|")[0].strip().strip("'\"")))
            continue
        out.append(("class" if isinstance(node, ast.ClassDef) else "def", node.name, None))
    return out

def _method_lines(cls) -> list[str]:
    "One line per public method or property defined in the class's own module (patched ones included), in order."
    lines = []
    for mn, m in vars(cls).items():
        if mn.startswith("_"): continue
        f = m.fget if isinstance(m, property) else getattr(m, "__func__", m)
        if not callable(f) or getattr(f, "__module__", None) != cls.__module__: continue
        head = f"`{mn}`" if isinstance(m, property) else f"`{mn}{_fmt_sig(f, width=10**6, annotations=False, drop_self=True)}`"
        d = own_doc(m)
        lines.append(f"- {head}" + (f": {md_text(d.splitlines()[0])}" if d else ""))
    return lines

def _index(name: str) -> str:
    return f"```{{index}} single: {name}\n```"

def api_markdown(mod, src: str, source_shown: bool = True) -> str | None:
    """Markdown for the public objects the cell `src` defines, one block each: the docstring (the source cell right
    above shows the signature; the block shows it, wrapped, only when `source_shown` is False) and, for a class, its
    methods. A `@patch`ed method is listed under its class (in the class's block when the class is in the same module,
    else in a block of its own); every name goes to the book's index."""
    blocks = []
    for kind, n, cls_name in cell_objects(src):
        if kind == "patch":
            cls = getattr(mod, cls_name, None)
            if cls is None or not inspect.isclass(cls): continue
            title = f"{cls.__name__}.{n}"
            if cls.__module__ == mod.__name__ or n not in vars(cls):  # listed in its class's block
                blocks.append(_index(title)); continue
            m = vars(cls)[n]
            body = [md_text(own_doc(m))]
            if not source_shown: body.insert(0, f"```python\ndef {title}{_fmt_sig(getattr(m, 'fget', m), drop_self=True)}\n```")
        else:
            obj = getattr(mod, n, None)
            if obj is None or not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
            title, body = n, [md_text(own_doc(obj))]
            if not source_shown: body.insert(0, f"```python\n{kind} {n}{_fmt_sig(obj)}\n```")
            if inspect.isclass(obj) and (ms := _method_lines(obj)): body.append("\n".join(ms))
        body = [b for b in body if b]
        if not body: blocks.append(_index(title)); continue
        blocks.append(f":::{{admonition}} `{title}`\n:class: api\n" + _index(title) + "\n\n" + "\n\n".join(body) + "\n:::")
    return "\n\n".join(blocks) or None

# ---------------------------------------------------------------- links, images and citations in the prose
def chapter_files() -> dict[str, str]:
    "{'06': '06_ddpm.ipynb', '15a': '15a_config.ipynb', ...}: the number the prose cites -> the chapter's file."
    return {m.group(1): Path(c).name for _, chs in quarto_chapters() for c in chs
            if (m := re.match(r"(\d\d[a-z]?)_", Path(c).name))}

# text the links must not touch: fenced code, inline code, math, existing links and images, directives, HTML tags
_PROTECT = re.compile(r"(```.*?```|`[^`\n]+`|\$\$.+?\$\$|\$[^$\n]+\$|!?\[[^\]\n]*\]\([^)\n]*\)|<[^>\n]+>)", re.S)
_MENTION = re.compile(r"\b([Cc]hapters?)(\s+)((?:\d\d[a-z]?)(?:(?:\s*(?:[\u2013,-]|and|or|to)\s*)(?:\d\d[a-z]?))*)\b")

def link_chapters(md: str, files: dict[str, str] | None = None) -> str:
    """Every "chapter NN" of the prose as a link to that chapter ("chapters 01–04": each number a link); numbers
    that are not a chapter are left as they are (the book test reports them)."""
    files = chapter_files() if files is None else files
    def one(m):
        word, sp, nums = m.groups()
        if word.lower() == "chapter" and nums in files: return f"[{word}{sp}{nums}]({files[nums]})"
        return word + sp + re.sub(r"\d\d[a-z]?", lambda n: f"[{n[0]}]({files[n[0]]})" if n[0] in files else n[0], nums)
    parts = _PROTECT.split(md)
    return "".join(p if i % 2 else _MENTION.sub(one, p) for i, p in enumerate(parts))

_LOCAL_IMG = re.compile(r"(!\[[^\]]*\]\()(\.\./[^)\s]+)(\))")

def stage_images(md: str, src_dir: Path, dst_dir: Path) -> str:
    "Images outside nbs/ (`![..](../benchmarks/results/x.png)`) copied into the staged book, the links pointed at the copy."
    def one(m):
        f = (src_dir / m.group(2)).resolve()
        if not f.exists(): sys.exit(f"an image the text shows does not exist: {m.group(2)}")
        rel = Path("_assets") / f.relative_to(ROOT)
        (dst_dir / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, dst_dir / rel)
        return m.group(1) + rel.as_posix() + m.group(3)
    return _LOCAL_IMG.sub(one, md)

BIB = ROOT / "nbs" / "references.bib"
REFERENCES_MD = """# References

The papers the book builds on, in the order of their authors' names. Each entry links to the paper; the chapters
cite them where their idea is used.

```{bibliography}
:all:
```
"""

# ---------------------------------------------------------------- folding the scaffolding
_FAIL = {"test_fail", "ExceptionExpected", "raises"}
_CHECK = {"test_eq", "test_ne", "test_close", "test_is", "test_eq_type", "test", "test_shuffled", "test_stdout", "test_warns"}
_SHAPE = re.compile(r"\.shape\b|\.dtype\b|\.size\(|\blen\(|\.ndim\b|\.device\b|\bisinstance\(|\btype\(")

def _stmt_kind(node: ast.stmt) -> str:
    "fail (a bad-input check), shape (a plain shape/type assertion), check (another assertion) or other."
    called = lambda n: {ast.unparse(c.func).split(".")[-1] for c in ast.walk(n) if isinstance(c, ast.Call)}
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        f = ast.unparse(node.value.func).split(".")[-1]
        if f in _FAIL: return "fail"
        if f in _CHECK: return "shape" if _SHAPE.search(ast.unparse(node.value)) else "check"
    if isinstance(node, ast.Assert): return "shape" if _SHAPE.search(ast.unparse(node)) else "check"
    if isinstance(node, (ast.With, ast.For)):
        if isinstance(node, ast.With) and {ast.unparse(i.context_expr).split("(")[0].split(".")[-1] for i in node.items} & _FAIL: return "fail"
        kinds = {_stmt_kind(b) for b in node.body}
        if kinds <= {"fail"}: return "fail"
        if kinds <= {"fail", "shape", "check"}: return "shape" if kinds <= {"fail", "shape"} else "check"
    return "other"

def fold_reason(code: str, outputs: list) -> str | None:
    """Why a cell is scaffolding to fold (hide its input behind a toggle), or None: "bad-input" when at least half
    of its statements are bad-input checks (`test_fail`), "shape" when it shows nothing and at least half of its
    statements are bad-input checks or plain shape/type assertions, "tests" when it shows nothing and at least half
    of its statements are assertions (a unit test: a round trip, an identity). Proofs stay visible: a proof prints
    what it measured (an error, an error bar), and a cell with an output is folded only by the `test_fail` rule;
    `#| show` keeps any cell open."""
    try: body = ast.parse(code).body
    except SyntaxError: return None
    if not body: return None
    kinds = [_stmt_kind(s) for s in body]
    fails, shapes, checks = kinds.count("fail"), kinds.count("shape"), kinds.count("check")
    if 2 * fails >= len(kinds): return "bad-input"
    if not outputs and fails > 0 and 2 * (fails + shapes) >= len(kinds): return "shape"
    if not outputs and 2 * (fails + shapes + checks) >= len(kinds): return "tests"
    return None

def imports_only(code: str) -> bool:
    "A cell of imports only (an exported module's header: the reader needs what it builds, not what it imports)."
    try: body = ast.parse(code).body
    except SyntaxError: return False
    imp = (ast.Import, ast.ImportFrom)
    return bool(body) and all(isinstance(n, imp) or (isinstance(n, ast.Try) and all(isinstance(b, imp) for b in n.body))
                              for n in body)

def validation_only(code: str) -> bool:
    "An exported cell that defines only private input checks (`_check_image`, `_verify_images`): bad-input scaffolding."
    try: body = ast.parse(code).body
    except SyntaxError: return False
    defs = [n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return bool(defs) and all(n.name.startswith("_") and re.search(r"check|verify", n.name) for n in defs)

def split_fail_tail(code: str) -> tuple[str, str] | None:
    "(head, tail) when the cell ends with bad-input checks (`test_fail` statements, each on lines of its own), else None."
    try: body = ast.parse(code).body
    except SyntaxError: return None
    i = len(body)
    while i > 0 and _stmt_kind(body[i - 1]) == "fail": i -= 1
    if i == len(body) or i == 0 or body[i - 1].end_lineno >= body[i].lineno or body[i].col_offset: return None
    lines = code.split("\n")
    return "\n".join(lines[:body[i].lineno - 1]).rstrip(), "\n".join(lines[body[i].lineno - 1:])

FOLD_PROMPT = {"bad-input": ("Show the bad-input checks", "Hide the bad-input checks"),
               "shape": ("Show the shape checks", "Hide the shape checks"),
               "tests": ("Show the unit test", "Hide the unit test"),
               "imports": ("Show the module's imports", "Hide the module's imports"),
               "validation": ("Show the input checks", "Hide the input checks"),
               "fold": ("Show code cell {type}", "Hide code cell {type}")}

def _fold(c, reason: str) -> None:
    c.metadata["tags"] = sorted(set(c.metadata.get("tags", [])) | {"hide-input"})
    show, hide = FOLD_PROMPT[reason]
    c.metadata["mystnb"] = {**c.metadata.get("mystnb", {}), "code_prompt_show": show, "code_prompt_hide": hide}

def _is_progress(out) -> bool:
    return out.get("output_type") == "stream" and out.get("name") == "stderr" and ("it/s]" in out.get("text", "") or "s/it]" in out.get("text", "") or "%|" in out.get("text", ""))

def stage_notebook(src: Path, dst: Path) -> dict:
    "Stage one chapter; returns counts (cells folded, API blocks) and the chapter's title."
    nb = nbformat.read(src, as_version=4)
    mod, cells, stats, files = None, [], {"folded": 0, "api": 0, "title": None}, chapter_files()
    for c in nb.cells:
        if c.cell_type != "code":
            if stats["title"] is None and (m := re.search(r"^#\s+(.+?)\s*$", c.source, re.M)): stats["title"] = m.group(1)
            if c.cell_type == "markdown": c.source = link_chapters(stage_images(c.source, src.parent, dst.parent), files)
            cells.append(c); continue
        dirs, code = split_directives(c.source)
        names = directive_names(dirs)
        for d in dirs:
            if d.startswith("default_exp"): mod = importlib.import_module(f"ldm_nb.{d.split()[1]}")
        exported = "export" in names and mod is not None
        if "hide" in names or not code.strip():
            # an exported cell the reader does not see: its block shows the signature too
            if exported and (md := api_markdown(mod, code, source_shown=False)): cells.append(nbformat.v4.new_markdown_cell(link_chapters(md, files)))
            continue
        c.outputs = [o for o in c.get("outputs", []) if not _is_progress(o)]
        for flag in FLAG_NOTE:
            if flag in names: cells.append(nbformat.v4.new_markdown_cell(f"*{(FLAG_NOTE if c.outputs else FLAG_NOTE_EMPTY)[flag]}*"))
        c.source, tail = code, None
        if "show" in names: reason = None
        elif exported: reason = "imports" if imports_only(code) else "validation" if validation_only(code) else None
        else: reason = "fold" if "fold" in names else fold_reason(code, c.outputs)
        if reason: _fold(c, reason); stats["folded"] += 1
        elif not exported and (sp := split_fail_tail(code)):
            # a proof that ends with bad-input checks: the proof stays in view, the checks fold in a cell of their own
            c.source, tail = sp[0], nbformat.v4.new_code_cell(sp[1])
            _fold(tail, "bad-input"); stats["folded"] += 1
        cells.append(c)
        if tail is not None: cells.append(tail)
        if exported and (md := api_markdown(mod, code)):
            cells.append(nbformat.v4.new_markdown_cell(link_chapters(md, files))); stats["api"] += md.count(":class: api")
    nb.cells = cells
    nbformat.write(nb, dst)
    return stats

def _static_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())

def _copy_mathjax(dst: Path) -> None:
    "Only the MathJax files the pages load, from the sphinx-mathjax-offline wheel (its folder name has a hyphen)."
    mj = [f for f in metadata.files("sphinx-mathjax-offline") if str(f).endswith("static/mathjax/tex-chtml.js")]
    if not mj: sys.exit("sphinx-mathjax-offline is installed without its MathJax files")
    root = Path(mj[0].locate()).parent
    if dst.exists(): shutil.rmtree(dst)
    for rel in MATHJAX_FILES:
        s, d = root / rel, dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(s, d) if s.is_dir() else shutil.copy2(s, d)

def chapter_label(stem: str, title: str | None) -> str:
    "The sidebar entry: the chapter's number as the prose cites it ('chapter 04', '15a') and its title."
    num = re.match(r"(\d+[a-z]?)_", stem)
    title = re.sub(r"[`*]", "", title or stem)
    return f"{num.group(1)} · {title}" if num else title

def main() -> None:
    if SRC.exists(): shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    for m in sorted(p.stem for p in (ROOT / "ldm_nb").glob("*.py") if not p.stem.startswith("_")):
        importlib.import_module(f"ldm_nb.{m}")          # every @patch applied before any class is documented
    parts, root, folded, n_api = [], None, 0, 0
    for part, chapters in quarto_chapters():
        files = []
        for ch in chapters:
            p = ROOT / ch
            if not p.exists(): sys.exit(f"_quarto.yml lists {ch}, which does not exist")
            st = stage_notebook(p, SRC / p.name); folded += st["folded"]; n_api += st["api"]
            files.append({"file": p.stem, "title": chapter_label(p.stem, st["title"])})
        if part is None and root is None and len(files) == 1: root = files[0]["file"]; continue
        parts.append({"caption": part or "Chapters", "chapters": files})
    shutil.copy2(BIB, SRC / BIB.name)                  # the bibliography (sphinxcontrib-bibtex, offline)
    (SRC / "references.md").write_text(REFERENCES_MD)
    parts.append({"caption": "References", "chapters": [{"file": "references", "title": "References"}]})
    (SRC / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": root, "parts": parts}, sort_keys=False, allow_unicode=True))
    shutil.copytree(STATIC, SRC / "_static")           # book.css, book.js: the column, wrapping, equations that fit
    config = {
        "title": book_title(), "author": "the ldm_nb team", "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "bibtex_bibfiles": [BIB.name],
        "parse": {"myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"]},
        "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False},
        "sphinx": {"recursive_update": True,
                   "config": {"mathjax_path": "mathjax/tex-chtml.js", "html_show_copyright": False,
                              "nb_merge_streams": True, "nb_render_markdown_format": "myst",
                              "bibtex_reference_style": "author_year",   # (Ho et al., 2020), not [HJA20]
                              "smartquotes": False,        # `--config` stays two hyphens, quotes stay straight
                              # no right-hand column: the page's contents go under the chapter list, the text gets the width
                              "html_theme_options": {"secondary_sidebar_items": []},
                              "html_sidebars": {"**": ["navbar-logo.html", "icon-links.html", "search-button-field.html",
                                                       "sbt-sidebar-nav.html", "page-toc.html"]},
                              "suppress_warnings": ["mystnb.unknown_mime_type"]}},
    }
    (SRC / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    jb = Path(sys.executable).parent / "jupyter-book"
    r = subprocess.run([str(jb), "build", str(SRC), "--builder", "html", "-W", "-n", "--keep-going", "--quiet"])
    if r.returncode: sys.exit(f"jupyter-book build failed (exit {r.returncode})")
    if OUT.exists(): shutil.rmtree(OUT)
    shutil.copytree(SRC / "_build" / "html", OUT)
    _copy_mathjax(OUT / "_static" / "mathjax")
    print(f"book written to {OUT.relative_to(ROOT)}/index.html: {n_api} API blocks, {folded} cells folded, "
          f"static files {_static_bytes(OUT / '_static') / 2**20:.1f} MiB")

if __name__ == "__main__":
    main()

"""The book as a reader sees it: every chapter page, opened in headless Chromium after `make book`.

One browser for all pages (scripts/measure_book.py drives it over its DevTools port): each page is loaded at
1280 px, measured after MathJax typeset it and book.js fitted its equations, its DOM checked and a screenshot saved
to `_build/screenshots/`. Offline and CPU-cheap (about half a minute for the book).
"""
from __future__ import annotations
import ast, os, re, shutil, sys, warnings
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from nbtools import quarto_chapters, split_directives  # noqa: E402
import build_book  # noqa: E402

HTML, SHOTS, STAGED = ROOT / "_build" / "html", ROOT / "_build" / "screenshots", ROOT / "_build" / "book_src"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHAPTERS = [Path(c) for _, chs in quarto_chapters() for c in chs]
# chapters whose wide equations were rewritten (aligned, shorter lines): none may need shrinking to fit
MATH_FIXED = {"01_schedules", "03_posterior", "04_elbo", "08_autoencoder", "09_losses"}
MIN_SCALE = 0.85          # below this a fitted equation is too small to read comfortably: rewrite it with `aligned`

@pytest.fixture(scope="module")
def book():
    "{chapter stem: (measurements, DOM)} for every chapter, one browser for all; saves the screenshots."
    if CHROMIUM is None:
        if os.environ.get("CI"): pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not (HTML / "index.html").exists(): pytest.fail("no built book: run `make book` first")
    from measure_book import Browser
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = {}
    with Browser(1280, 900) as b:
        for nb in CHAPTERS:
            page = HTML / f"{nb.stem}.html"
            if not page.exists(): out[nb.stem] = None; continue
            m = b.measure(page.as_uri())
            out[nb.stem] = (m, b.dom())
            b.screenshot(SHOTS / f"{nb.stem}.png", 1800)
    return out

@pytest.mark.parametrize("nb", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_page(book, nb: Path):
    assert book[nb.stem] is not None, f"{nb.stem}.html was not built"
    m, dom = book[nb.stem]
    src = nbformat.read(ROOT / nb, as_version=4)
    md = "\n".join(c.source for c in src.cells if c.cell_type == "markdown")
    n_png = sum("image/png" in o.get("data", {}) for c in src.cells if c.cell_type == "code" for o in c.get("outputs", []))
    # the math was typeset by MathJax (served locally), with no TeX errors
    if "$" in md:
        assert "<mjx-container" in dom, "math was not typeset"
        assert "<mjx-merror" not in dom and "Math input error" not in dom, "MathJax reported a TeX error"
    assert m["mathjax_errors"] == 0, "MathJax reported a TeX error"
    missing = [f for f in m["mathjax_files"] if not (HTML / "_static" / "mathjax" / f).exists()]
    assert not missing, f"the page loads MathJax files the build does not ship (build_book.MATHJAX_FILES): {missing}"
    # every figure saved in the notebook is on the page
    assert len(re.findall(r'<img[^>]+src="_images/', dom)) >= n_png, "a figure is missing"
    # no error output, no leftover nbdev directive lines
    assert "Traceback (most recent call last)" not in dom and 'class="output traceback' not in dom
    assert not re.search(r"#\|\s*(export|hide|default_exp|slow|gpu|eval)", dom), "an nbdev directive line is visible"
    # markdown tables (in the text or in a displayed Markdown output) became HTML tables, not rows of pipes
    text = re.sub(r"<pre[\s\S]*?</pre>", "", dom)          # code may hold a table's source ("|---|"): not a table
    assert not re.search(r"\|\s*(-{3,}|\u2014)\s*\|", text), "a markdown table was not rendered"
    n_md_tables = sum(bool(re.search(r"^\|.*\|\s*$\n^\|[-| :]+\|\s*$", o.get("data", {}).get("text/markdown", ""), re.M))
                      for c in src.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if n_md_tables: assert dom.count("<table") >= n_md_tables, "a displayed markdown table is missing"
    # no TeX source left for the reader: raw $, \_ (in the text or inside typeset math), TeX commands outside code
    raw = {k: m[k] for k in ("raw_dollar", "raw_backslash_underscore", "raw_tex", "math_backslash_shown") if m[k]}
    assert not raw, f"TeX source on the page {raw}: {m['raw_samples']}"
    # the column fits: no display equation, text output or API signature wider than its box
    assert m["display_equations_too_wide"] == 0, m["wide_equations"]
    assert m["text_outputs_cut_off"] == 0, "a text output is cut off on the right"
    assert m["api_signatures_scroll"] == 0, "an API signature scrolls"
    small = [e for e in m["scaled_equations"] if e["scale"] < MIN_SCALE]
    if nb.stem in MATH_FIXED: assert not small, f"equations shrunk below {MIN_SCALE:.0%} to fit: {small}"
    elif small: warnings.warn(f"{nb.stem}: equations shrunk below {MIN_SCALE:.0%} to fit (rewrite with aligned): {small}")
    # the API blocks: the object's own docstring only, never torch's inherited ones
    assert m["api_inherited_torch_doc"] == 0, "an API block shows a docstring inherited from torch"
    # no smartquotes: `--config` keeps its two hyphens
    assert m["smartquote_dash_config"] == 0 and "\u2013config" not in dom, "smartquotes turned --config into an en dash"
    shot = SHOTS / f"{nb.stem}.png"
    assert shot.stat().st_size > 10_000, "the screenshot is blank"

def test_code_fits_the_column(book):
    "At most 5 % of the shown code cells scroll sideways (long lines wrap)."
    cells = sum(m["code_cells"] - m["code_cells_folded"] for m, _ in book.values())
    wide = sum(m["code_cells_hscroll"] for m, _ in book.values())
    assert wide <= 0.05 * cells, f"{wide} of {cells} code cells need horizontal scrolling"

def test_bad_input_checks_are_folded(book):
    "The staged cells that are mostly `test_fail` are folded, and the page shows few `test_fail` lines."
    for nb in CHAPTERS:
        for c in nbformat.read(STAGED / nb.name, as_version=4).cells:
            if c.cell_type != "code": continue
            body = ast.parse(c.source).body
            fails = sum(build_book._stmt_kind(s) == "fail" for s in body)
            if body and 2 * fails >= len(body):
                assert "hide-input" in c.metadata.get("tags", []), f"{nb.stem}: not folded:\n{c.source[:300]}"
    shown = sum(m["test_fail_lines_shown"] for m, _ in book.values())
    total = sum(m["test_fail_lines_total"] for m, _ in book.values())
    assert shown <= 0.2 * total, f"{shown} of {total} test_fail lines are shown"

def test_hidden_cells_are_hidden():
    "A `#| hide` cell's code (the fastcore.test import in each chapter) never reaches the page."
    for nb in CHAPTERS[1:]:
        html = (HTML / f"{nb.stem}.html").read_text()
        assert "from fastcore.test import" not in html, nb.stem

def test_api_docs_shown():
    "Each exported function or class shows its docstring rendered (our static show_doc), not the signature again."
    html = (HTML / "00_core.html").read_text()
    assert re.search(r'class="[^"]*\bapi\b[^"]*admonition', html), "no API block"
    blocks = re.findall(r'<div class="api admonition"[^>]*>(.*?)\n</div>', html, re.S)
    text = {re.sub(r"<[^>]+>", "", b.split("</p>")[0]).strip(): re.sub(r"<[^>]+>", "", b) for b in blocks}
    assert "Gather a[t] for" in text["extract"], text.get("extract")
    assert not any("<pre" in b for b in blocks), "an API block repeats the source's signature"

def test_api_blocks_staged():
    "Blocks after a shown source cell have no code; a @patch'ed method is never a block of a free function."
    for nb in CHAPTERS:
        cells = nbformat.read(STAGED / nb.name, as_version=4).cells
        for prev, c in zip(cells, cells[1:]):
            if c.cell_type == "markdown" and ":class: api" in c.source and prev.cell_type == "code":
                assert "```python" not in c.source, f"{nb.stem}: the block repeats the signature:\n{c.source[:300]}"
                for kind, name, cls in build_book.cell_objects(prev.source):
                    if kind == "patch": assert f"{{admonition}} `{name}`" not in c.source, f"{nb.stem}: {name}"

def test_fmt_sig_and_docs():
    "Defaults keep their quotes; docstrings keep * and _ literal; only the object's own docstring counts."
    import torch
    def f(device: str = "cpu", parameterization="eps", *, n: int = 2): "h*f, w*f and x_0, $q(x_{t-1})$"
    assert build_book._fmt_sig(f) == "(device: str = 'cpu', parameterization='eps', *, n: int = 2)"
    assert build_book.md_text(f.__doc__) == r"h\*f, w\*f and x\_0, $q(x_{t-1})$"
    class M(torch.nn.Module):
        def forward(self, x): return x
    assert build_book.own_doc(M) == "" and build_book.own_doc(M.forward) == ""
    assert build_book.cell_objects("@patch\ndef step(self: DDIMSampler, x): pass\ndef g(): pass") == \
        [("patch", "step", "DDIMSampler"), ("def", "g", None)]
    assert build_book.fold_reason("test_fail(lambda: f(0))\ntest_fail(lambda: f(1))\ny = f(2)", []) == "bad-input"
    assert build_book.fold_reason("x = torch.randn(10)\ns = x.std()\nprint(s)\ntest_fail(lambda: f(0))", ["out"]) is None
    assert build_book.split_fail_tail("y = f(2)\nprint(y)\ntest_fail(lambda: f(0))") == ("y = f(2)\nprint(y)", "test_fail(lambda: f(0))")

def test_navigation_and_static():
    "Chapters are numbered in the sidebar, the index lists the API, and only the MathJax files used are shipped."
    html = (HTML / "index.html").read_text()
    numbered = re.findall(r">\s*(\d\d[a-z]?) \u00b7 ", html)
    assert set(numbered) == set(build_book.chapter_files()), numbered
    gen = (HTML / "genindex.html").read_text()
    assert len(re.findall(r'<a href="\d\d[a-z]?_\w+\.html#index-\d+">', gen)) >= 50, "genindex is (nearly) empty"
    mj = HTML / "_static" / "mathjax"
    shipped = sorted(str(p.relative_to(mj)) for p in mj.rglob("*") if p.is_file())
    assert all(p == "tex-chtml.js" or p.startswith("output/chtml/fonts/") for p in shipped), shipped
    size = sum(p.stat().st_size for p in (HTML / "_static").rglob("*") if p.is_file())
    assert size < 12 * 2**20, f"the book's static files are {size / 2**20:.1f} MiB"
    for nb in CHAPTERS:   # the note before slow cells is written for a reader
        assert "nbdev-test --flags" not in "".join(c.source for c in nbformat.read(STAGED / nb.name, as_version=4).cells
                                                 if c.cell_type == "markdown" and c.source.startswith("*This cell")), nb.stem

def test_fold_directive_and_slow_note(tmp_path):
    "`#| fold` folds any cell; a `#| slow` cell gets a note for the reader, not nbdev's flags."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("#| fold\nx = 1\nprint(x)"),
                                         nbformat.v4.new_code_cell("#| slow\ny = 2")])
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert build_book.stage_notebook(tmp_path / "a.ipynb", tmp_path / "b.ipynb")["folded"] == 1
    fold, note, slow = nbformat.read(tmp_path / "b.ipynb", as_version=4).cells
    assert "hide-input" in fold.metadata["tags"] and fold.source == "x = 1\nprint(x)"
    assert note.cell_type == "markdown" and "takes minutes" in note.source and "#|" not in note.source
    assert slow.source == "y = 2"

NUMBERED = [c for c in CHAPTERS if re.match(r"\d\d", c.stem)]

def test_every_chapter_has_a_figure_and_a_recap(book):
    "A figure on every numbered chapter's page, and each chapter ends with what it proved."
    no_fig = [c.stem for c in NUMBERED if book[c.stem][0]["figures"] < 1]
    assert not no_fig, f"chapters without a figure: {no_fig}"
    no_recap = {c.stem: book[c.stem][0]["last_h2"] for c in NUMBERED if book[c.stem][0]["last_h2"] != "What this chapter proved"}
    assert not no_recap, f"chapters that do not end with 'What this chapter proved' (last section shown): {no_recap}"

def test_chapters_are_linked(book):
    "Every 'chapter NN' in the prose is a link (a number that is no chapter stays text and fails here)."
    unlinked = {k: v[0]["unlinked_samples"] for k, v in book.items() if v and v[0]["chapter_mentions_unlinked"]}
    assert not unlinked, f"'chapter NN' mentions that are not links: {unlinked}"
    files = build_book.chapter_files()
    assert build_book.link_chapters("see chapter 06 and chapters 01–04, not `chapter 07` or chapter 99", files) == \
        "see [chapter 06](06_ddpm.ipynb) and chapters [01](01_schedules.ipynb)–[04](04_elbo.ipynb), not `chapter 07` or chapter 99"

def test_bibliography(book):
    "The References page lists every entry of nbs/references.bib with a link to the paper, and the chapters cite them."
    html = (HTML / "references.html").read_text()
    bib = (ROOT / "nbs" / "references.bib").read_text()
    keys, urls = re.findall(r"^@\w+\{([^,]+),", bib, re.M), re.findall(r"url = \{([^}]+)\}", bib)
    assert len(keys) >= 20 and len(urls) == len(keys), "every entry needs a url"
    assert html.count('class="citation"') == len(keys), "an entry is missing from the References page"
    for u in urls: assert f'href="{u}"' in html, f"{u} is not linked on the References page"
    cited = sum(v[0]["citations"] for v in book.values() if v)
    uncited = [c.stem for c in NUMBERED[1:] if book[c.stem][0]["citations"] == 0 and c.stem not in ("15a_config", "15b_checkpoint")]
    assert cited >= 40 and not uncited, f"{cited} citations; chapters with none: {uncited}"

def test_landing_page():
    "The index is a reader's landing page: what you learn before how to build, the final grid, every chapter linked."
    html = (HTML / "index.html").read_text()
    learn, install = html.find("What you will learn"), html.find("Install and the two commands")
    assert 0 < learn < install, "the reader's material must come before make/CI"
    assert re.search(r'<img[^>]+src="_images/demo_ldm_grid\.png"', html), "the final 10x10 grid is missing"
    for f in build_book.chapter_files().values():
        assert f'href="{Path(f).stem}.html"' in html, f"the road map does not link {f}"
    # the caption's numbers are the demo's measured ones, not typed by hand
    import json
    d = json.loads((ROOT / "benchmarks" / "results" / "demo_ldm.json").read_text())
    text = re.sub(r"<[^>]+>", "", html)
    for want in (f"{d['vae_steps']} steps", f"{d['ldm_steps']} steps", f"{100 * d['class_accuracy']:.1f} %",
                 f"Fréchet distance to real digits is {d['fd']:.1f}", f"against {d['fd_floor']:.1f}", f"scale {d['guidance_scale']:g}",
                 f"in {d['sampler'].split('S=')[1].split()[0]} steps"):
        assert want in text, f"the landing page's caption does not say {want!r} (benchmarks/results/demo_ldm.json)"
    assert (HTML / "notation.html").exists()

def test_teaching_in_front(book):
    "Code and API blocks take under half of a chapter page's height, on average over the chapters."
    shares = {c.stem: book[c.stem][0]["share"]["code_and_api"] for c in NUMBERED}
    mean = sum(shares.values()) / len(shares)
    assert mean < 0.5, f"code + API blocks are {mean:.1%} of the average chapter page: {shares}"

"""The book as a reader sees it: every chapter page, opened in headless Chromium after `make book`."""
from __future__ import annotations
import os, re, shutil, subprocess, sys, tempfile
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from nbtools import quarto_chapters  # noqa: E402

HTML, SHOTS = ROOT / "_build" / "html", ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--virtual-time-budget=15000"]
CHAPTERS = [Path(c) for _, chs in quarto_chapters() for c in chs]

def _chromium(*args: str) -> str:
    with tempfile.TemporaryDirectory() as prof:
        r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={prof}", *args],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout

@pytest.fixture(scope="module", autouse=True)
def _need_book_and_browser():
    if CHROMIUM is None:
        if os.environ.get("CI"): pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not (HTML / "index.html").exists(): pytest.fail("no built book: run `make book` first")

@pytest.mark.parametrize("nb", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_page(nb: Path):
    page = HTML / f"{nb.stem}.html"
    assert page.exists(), f"{page} was not built"
    dom = _chromium("--dump-dom", page.as_uri())
    src = nbformat.read(ROOT / nb, as_version=4)
    md = "\n".join(c.source for c in src.cells if c.cell_type == "markdown")
    n_png = sum("image/png" in o.get("data", {}) for c in src.cells if c.cell_type == "code" for o in c.get("outputs", []))
    # the math was typeset by MathJax (served locally), with no TeX errors
    if "$" in md:
        assert "<mjx-container" in dom, "math was not typeset"
        assert "<mjx-merror" not in dom and "Math input error" not in dom, "MathJax reported a TeX error"
    # every figure saved in the notebook is on the page
    assert len(re.findall(r'<img[^>]+src="_images/', dom)) >= n_png, "a figure is missing"
    # no error output, no leftover nbdev directive lines
    assert "Traceback (most recent call last)" not in dom and 'class="output traceback' not in dom
    assert not re.search(r"#\|\s*(export|hide|default_exp|slow|gpu|eval)", dom), "an nbdev directive line is visible"
    # markdown tables (in the text or in a displayed Markdown output) became HTML tables, not rows of pipes
    assert not re.search(r"\|\s*(-{3,}|\u2014)\s*\|", dom), "a markdown table was not rendered"
    n_md_tables = sum(bool(re.search(r"^\|.*\|\s*$\n^\|[-| :]+\|\s*$", o.get("data", {}).get("text/markdown", ""), re.M))
                      for c in src.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if n_md_tables: assert dom.count("<table") >= n_md_tables, "a displayed markdown table is missing"
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{nb.stem}.png"
    _chromium("--window-size=1200,1800", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 10_000, "the screenshot is blank"

def test_hidden_cells_are_hidden():
    "A `#| hide` cell's code (the fastcore.test import in each chapter) never reaches the page."
    for nb in CHAPTERS[1:]:
        html = (HTML / f"{nb.stem}.html").read_text()
        assert "from fastcore.test import" not in html, nb.stem

def test_api_docs_shown():
    "Each exported function or class shows its signature and docstring (our static show_doc)."
    html = (HTML / "00_core.html").read_text()
    assert re.search(r'class="[^"]*\bapi\b[^"]*admonition', html), "no API block"
    text = re.sub(r"<[^>]+>", "", html)
    # the signature, then the docstring rendered as markdown (no backticks left)
    assert re.search(r"def extract\(a: torch\.Tensor, t: torch\.Tensor, x_shape\)[^\n]*\n\s*Gather a\[t\] for", text)

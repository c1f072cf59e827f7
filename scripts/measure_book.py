"""Measure the built book as a reader sees it: each chapter opened at 1280 px in headless Chromium,
measured after MathJax has typeset the page.

    .venv/bin/python scripts/measure_book.py [--out _build/measure.json] [--width 1280] [CHAPTER ...]

Per chapter and in total (JSON): the share of the article's height taken by code cells (input), API blocks,
text outputs and images; the `test_fail(` lines shown (and folded); code cells, text outputs and API
signatures wider than their box (they scroll or are cut off); display equations wider than the column (with
their TeX); raw `$`, `\\_` or TeX source left in the text outside code; MathJax errors; figures; links to
other chapters. Chromium is driven over its DevTools port (`websocket-client`), one browser for all pages;
nothing is fetched from the network. `tests/test_book.py` uses the same `Browser` and `measure_page`.
"""
from __future__ import annotations
import argparse, json, re, shutil, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbtools import ROOT, quarto_chapters  # noqa: E402

HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]

# Runs in the page once it has loaded; resolves to the measurements. Heights are rendered heights
# (a folded cell's hidden input counts 0); "wider than its box" is scrollWidth > clientWidth + 1.
MEASURE_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  if (window.bookReady) await window.bookReady;        // book.js: equations fitted to the column
  if (document.fonts) await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const art = document.querySelector('article.bd-article') || document.body;
  const H = art.getBoundingClientRect().height;
  // shown: rendered (a folded cell's input sits in a closed <details>, which checkVisibility() sees)
  const shown = e => (e.checkVisibility ? e.checkVisibility() : true) && e.getClientRects().length > 0 && e.getBoundingClientRect().height > 0;
  const h = els => els.filter(shown).reduce((s, e) => s + e.getBoundingClientRect().height, 0);
  const wide = e => e.scrollWidth > e.clientWidth + 1;
  const q = s => Array.from(art.querySelectorAll(s));
  const first = (s, n) => s.replace(/\s+/g, ' ').trim().slice(0, n || 100);
  const inputs = q('.cell_input'), apis = q('.admonition.api');
  const outText = q('.cell_output .output pre, .cell_output .output.text_plain, .cell_output pre');
  const imgs = q('img');
  const codeIn = inputs.map(c => c.querySelector('pre')).filter(Boolean);
  const failLines = pre => (pre.textContent.match(/^.*test_fail\(.*$/mg) || []).length;
  const folded = q('.cell').filter(c => c.querySelector('.cell_input') && !shown(c.querySelector('.cell_input')));
  // display equations: the typeset math is wider than the box MathJax was given
  const eqs = q('mjx-container[display="true"]');
  const items = (window.MathJax && MathJax.startup && MathJax.startup.document) ? Array.from(MathJax.startup.document.math) : [];
  const texOf = el => { const it = items.find(m => m.typesetRoot === el); return it ? it.math : ''; };
  const wideEqs = eqs.filter(e => { const m = e.querySelector('mjx-math'); return m && (m.getBoundingClientRect().width > e.clientWidth + 1 || wide(e)); })
                     .map(e => ({tex: first(texOf(e), 160), width: Math.round(e.querySelector('mjx-math').getBoundingClientRect().width), column: e.clientWidth}));
  // text outside code and math: raw $, \_ or a TeX command
  const walker = document.createTreeWalker(art, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement.closest('pre, code, mjx-container, script, style, .cell_output, .MathJax') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const raw = {dollar: [], underscore: [], tex: []};
  for (let n; (n = walker.nextNode());) {
    const t = n.textContent;
    if (t.includes('$')) raw.dollar.push(first(t));
    if (t.includes('\\_')) raw.underscore.push(first(t));
    if (/\\[A-Za-z]{2,}|\\[{}]/.test(t)) raw.tex.push(first(t));
  }
  // inside typeset math: a backslash that reached the page (e.g. \_ inside \text{...}), read from the assistive MathML
  const mathBackslash = Array.from(art.querySelectorAll('mjx-container')).filter(e => {
    const mml = e.querySelector('mjx-assistive-mml'); return mml && /\\/.test(mml.textContent); }).map(e => first(texOf(e), 120));
  // "chapter 06" in the text (outside code, math, outputs) whose number is not a link
  const unlinked = [];
  const w2 = document.createTreeWalker(art, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement.closest('pre, code, mjx-container, script, style, .cell_output, a') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  for (let n; (n = w2.nextNode());) for (const m of n.textContent.matchAll(/\b[Cc]hapters?\s+\d\d[a-z]?\b/g)) unlinked.push(m[0]);
  const headings = q('h2').map(e => e.textContent.replace(/[#\u00b6]/g, '').trim());
  const errors = art.querySelectorAll('mjx-merror, [data-mjx-error]').length;
  const here = location.pathname.split('/').pop();
  const chapterLinks = new Set(q('a[href]').filter(a => !a.closest('.prev-next-area, nav, .toctree-wrapper'))
      .map(a => a.getAttribute('href').split('#')[0]).filter(f => /^[\w.-]+\.html$/.test(f) && f !== here && !/^(genindex|search|py-modindex)\.html$/.test(f)));
  const sigPres = apis.flatMap(a => Array.from(a.querySelectorAll('pre')));
  const sigCodes = apis.flatMap(a => Array.from(a.querySelectorAll('code'))).filter(c => {
    const box = c.closest('.admonition').getBoundingClientRect(); return c.getBoundingClientRect().right > box.right + 1; });
  return {
    article_height_px: Math.round(H),
    share: {code_and_api: (h(inputs) + h(apis)) / H, code: h(inputs) / H, api: h(apis) / H,
            text_outputs: h(outText) / H, images: h(imgs) / H},
    code_cells: inputs.length, code_cells_folded: folded.length,
    test_fail_lines_shown: codeIn.filter(shown).reduce((s, p) => s + failLines(p), 0),
    test_fail_lines_total: codeIn.reduce((s, p) => s + failLines(p), 0),
    code_cells_hscroll: codeIn.filter(shown).filter(wide).length,
    display_equations: eqs.length, display_equations_too_wide: wideEqs.length, wide_equations: wideEqs,
    display_equations_scaled: eqs.filter(e => e.dataset.fitScale).length,
    scaled_equations: eqs.filter(e => e.dataset.fitScale).map(e => ({tex: first(texOf(e), 160), scale: +e.dataset.fitScale})),
    column_px: Math.round((art.querySelector('section') || art).getBoundingClientRect().width),
    text_outputs: outText.length, text_outputs_cut_off: outText.filter(shown).filter(wide).length,
    api_blocks: apis.length, api_signatures_scroll: sigPres.filter(shown).filter(wide).length + sigCodes.length,
    api_inherited_torch_doc: apis.reduce((s, a) => s + (a.textContent.match(/Define the computation performed at every call|Initialize internal Module state|Base class for all neural network modules/g) || []).length, 0),
    raw_dollar: raw.dollar.length, raw_backslash_underscore: raw.underscore.length, raw_tex: raw.tex.length,
    math_backslash_shown: mathBackslash.length,
    raw_samples: [...raw.dollar, ...raw.underscore, ...raw.tex, ...mathBackslash].slice(0, 8),
    smartquote_dash_config: (art.textContent.match(/[\u2013\u2014]config/g) || []).length,
    mathjax_errors: errors,
    figures: imgs.filter(i => i.closest('.cell_output')).length, images: imgs.length,
    links_to_chapters: chapterLinks.size, chapter_mentions_unlinked: unlinked.length, unlinked_samples: unlinked.slice(0, 5),
    citations: q('a[href]').filter(a => /^references\.html#/.test(a.getAttribute('href'))).length,
    last_h2: headings.length ? headings[headings.length - 1] : null,
  };
})()
"""


class Browser:
    "One headless Chromium, driven over its DevTools websocket; `measure(url)` loads a page and runs MEASURE_JS."

    def __init__(self, width: int = 1280, height: int = 900):
        import websocket  # websocket-client (dev extra)
        if CHROMIUM is None: raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.prof = tempfile.mkdtemp(prefix="measure-book-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--window-size={width},{height}", f"--user-data-dir={self.prof}",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, t0 = Path(self.prof) / "DevToolsActivePort", time.time()
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.time() - t0 > 60 or self.proc.poll() is not None: self.close(); raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        for _ in range(100):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
                page = next(t for t in targets if t.get("type") == "page")
                break
            except Exception: time.sleep(0.1)
        else: self.close(); raise RuntimeError("no DevTools page target")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
        self.n, self.requests, self.height = 0, [], height
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.enable"); self.call("Network.enable")

    def call(self, method: str, **params):
        self.n += 1; mid = self.n
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Network.requestWillBeSent": self.requests.append(msg["params"]["request"]["url"])
            if msg.get("id") == mid:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, js: str):
        r = self.call("Runtime.evaluate", expression=js, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r: raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def measure(self, url: str) -> dict:
        "Load `url`, wait for MathJax and measure; `mathjax_files` lists the MathJax files the page requested."
        self.requests = []
        self.call("Page.navigate", url=url)
        t0 = time.time()
        while self.evaluate("document.readyState") != "complete" or not self.evaluate("location.href").startswith(url.split("#")[0]):
            if time.time() - t0 > 60: raise RuntimeError(f"{url} did not load")
            time.sleep(0.05)
        res = self.evaluate(MEASURE_JS)
        self.call("Runtime.evaluate", expression="0")   # drain the events of the page's last requests
        res["mathjax_files"] = sorted({u.split("/_static/mathjax/")[1] for u in self.requests if "/_static/mathjax/" in u})
        return res

    def dom(self) -> str:
        "The current page's DOM as HTML (after scripts and MathJax ran), like `chromium --dump-dom`."
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path: Path, height: int = 1800) -> None:
        "A PNG of the top `height` px of the current page at the window's width (the window is made that tall for it)."
        import base64
        w = self.evaluate("window.innerWidth")
        self.call("Emulation.setDeviceMetricsOverride", width=w, height=height, deviceScaleFactor=1, mobile=False)
        try:
            self.evaluate("window.scrollTo(0, 0); new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            Path(path).write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        finally:
            self.call("Emulation.setDeviceMetricsOverride", width=w, height=self.height, deviceScaleFactor=1, mobile=False)

    def close(self):
        try: self.ws.close()
        except Exception: pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill()
        shutil.rmtree(self.prof, ignore_errors=True)

    def __enter__(self): return self
    def __exit__(self, *a): self.close()


def chapters() -> list[str]:
    return [Path(c).stem for _, chs in quarto_chapters() for c in chs]

SUM = ["code_cells", "code_cells_folded", "test_fail_lines_shown", "test_fail_lines_total", "code_cells_hscroll",
       "display_equations", "display_equations_too_wide", "display_equations_scaled", "text_outputs", "text_outputs_cut_off", "api_blocks",
       "api_signatures_scroll", "api_inherited_torch_doc", "raw_dollar", "raw_backslash_underscore", "raw_tex",
       "math_backslash_shown", "smartquote_dash_config", "mathjax_errors", "figures", "images", "links_to_chapters",
       "chapter_mentions_unlinked", "citations"]

def totals(per: dict[str, dict], html: Path = HTML) -> dict:
    tot = {k: sum(p[k] for p in per.values()) for k in SUM}
    H = sum(p["article_height_px"] for p in per.values())
    tot["article_height_px"] = H
    tot["share"] = {k: sum(p["share"][k] * p["article_height_px"] for p in per.values()) / H
                    for k in next(iter(per.values()))["share"]}
    shares = [p["share"]["code_and_api"] for p in per.values()]
    tot["share_code_and_api_min_max"] = [min(shares), max(shares)]
    tot["share_code_and_api_mean"] = sum(shares) / len(shares)     # the average page (every chapter counts once)
    tot["static_bytes"] = sum(f.stat().st_size for f in (html / "_static").rglob("*") if f.is_file())
    return tot

def measure_book(names: list[str] | None = None, width: int = 1280, html: Path = HTML) -> dict:
    per = {}
    with Browser(width) as b:
        for n in names or chapters():
            per[n] = b.measure((html / f"{n}.html").as_uri())
    return {"width_px": width, "html": str(html), "chapters": per, "total": totals(per, html)}

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter stems (default: all, from _quarto.yml)")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: print it)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--html", type=Path, default=HTML, help="the built book (default: _build/html)")
    a = ap.parse_args()
    if not (a.html / "index.html").exists(): sys.exit(f"no built book in {a.html}: run `make book` first")
    res = measure_book(a.chapters or None, a.width, a.html.resolve())
    txt = json.dumps(res, indent=1)
    if a.out: a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(txt + "\n")
    else: print(txt)
    t = res["total"]
    print(f"code+API {t['share']['code_and_api']:.0%} of the height, {t['share_code_and_api_mean']:.0%} on the average page (per chapter {t['share_code_and_api_min_max'][0]:.0%}"
          f"-{t['share_code_and_api_min_max'][1]:.0%}), images {t['share']['images']:.0%}; test_fail lines shown "
          f"{t['test_fail_lines_shown']}/{t['test_fail_lines_total']}; code cells h-scroll {t['code_cells_hscroll']}/{t['code_cells']}; "
          f"wide equations {t['display_equations_too_wide']}/{t['display_equations']}; outputs cut off "
          f"{t['text_outputs_cut_off']}/{t['text_outputs']}; API signatures scroll {t['api_signatures_scroll']}; raw $ {t['raw_dollar']}, "
          f"\\_ {t['raw_backslash_underscore'] + t['math_backslash_shown']}, TeX {t['raw_tex']}; MathJax errors {t['mathjax_errors']}; "
          f"static {t['static_bytes'] / 2**20:.1f} MiB", file=sys.stderr)

if __name__ == "__main__":
    main()

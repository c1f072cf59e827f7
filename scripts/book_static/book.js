// ldm_nb book: a display equation wider than its column is scaled down until it fits (MathJax 3 does not break
// lines). `window.bookReady` resolves once the page is typeset and fitted (scripts/measure_book.py waits for it);
// a fitted equation carries data-fit-scale, so the build's measurement can list the ones to rewrite with `aligned`.
(function () {
  function fit() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (e) {
      if (e.dataset.fitBase === undefined) e.dataset.fitBase = e.style.fontSize || '';
      e.style.fontSize = e.dataset.fitBase;
      delete e.dataset.fitScale;
      var m = e.querySelector('mjx-math');
      if (!m) return;
      var w = m.getBoundingClientRect().width, c = e.clientWidth;
      if (c > 0 && w > c) {
        var s = Math.floor((c - 2) / w * 1000) / 1000;
        e.style.fontSize = (parseFloat(getComputedStyle(e).fontSize) * s) + 'px';
        e.dataset.fitScale = s.toFixed(3);
      }
    });
  }
  var done;
  window.bookReady = new Promise(function (r) { done = r; });
  window.addEventListener('load', function () {
    var mj = window.MathJax && MathJax.startup && MathJax.startup.promise;
    (mj || Promise.resolve()).then(function () { fit(); done(); });
  });
  var t;
  window.addEventListener('resize', function () { clearTimeout(t); t = setTimeout(fit, 100); });
})();

"""The built book in a real browser (issue 5, item 5): Debian's headless chromium, driven by selenium.

A local `http.server` (127.0.0.1, a free port, in a thread) serves the smoke-scale HTML built once per
session (`smoke_html` in conftest.py). For the landing page and every chapter in the toc the browser must
find: HTTP 200 and a title; every <img> loaded (naturalWidth > 0) and at least one figure from a cell
output; all the math typeset by the offline MathJax (every `.math` element holds an `mjx-container`, no
`mjx-merror`, no red undefined-macro text); no error output (no traceback/error output area, no stderr
block containing "Error", no "Traceback" text); no failed request and no JavaScript error in the console.
Static checks of the HTML (tests/test_book.py) cannot see a figure that fails to load or TeX that MathJax
rejects; this can. `test_checker_reports_a_broken_page` shows each check failing on a page made to fail.

The browser is Debian's `chromium` + `chromedriver` (`tools/install_browser.sh`, run by `.ci/run`).
Without them the tests skip with the reason, except where BIGSPARSE_REQUIRE_BROWSER=1 (CI): there they fail.
Selenium is given the chromedriver's path explicitly, so Selenium Manager never runs (nor downloads anything).
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.metadata
import os
import shutil
import threading
from pathlib import Path

import pytest

from bigsparse_lib import book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book.chapters(ROOT)
REQUIRE_ENV = "BIGSPARSE_REQUIRE_BROWSER"
# No sandbox (CI runs as root), no GPU, and nothing that talks to the network on its own.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1600")
TIMEOUT_S = 120  # generous: the test machine has 2 cores shared with other jobs
IGNORED_PATHS = ("/favicon.ico",)  # the book has no favicon; every browser asks for one
# Console errors of the theme itself, harmless and not the book's: sphinx-thebe writes its config
# script twice under jupyter-book 1.0, and pydata-sphinx-theme complains once about a fresh profile.
IGNORED_CONSOLE = ("Identifier 'THEBE_JS_URL' has already been declared", "Got invalid theme mode")


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, from PATH or /usr/bin, or None when either is missing."""
    found = []
    for name in ("chromium", "chromedriver"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, plus in-memory `pages`, and records (path, status) of every request."""

    pages: dict[str, bytes] = {}
    requests: list[tuple[str, int]] = []

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in self.pages:
            body = self.pages[path]
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            super().do_GET()

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path.split("?")[0], int(getattr(code, "value", code))))

    def log_message(self, *args):  # quiet: failures are reported by the checks
        pass


@contextlib.contextmanager
def serve(directory: Path, pages: dict[str, bytes] | None = None):
    """A local HTTP server for `directory` on 127.0.0.1 (free port) in a thread -> (base_url, requests)."""
    handler = type("Handler", (_Handler,), {"pages": dict(pages or {}), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless chromium driven by selenium, with a fresh profile; skips (or, on CI, fails) without it."""
    exes = find_browser()
    if exes is None:
        msg = ("Debian's chromium and chromedriver are not installed (looked on PATH and in /usr/bin); "
               "run `tools/install_browser.sh` as root (apt-get install chromium chromium-driver)")
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {msg}")
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = exes[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=exes[1]), options=options)
    driver.set_page_load_timeout(TIMEOUT_S)
    driver.set_script_timeout(TIMEOUT_S)
    yield driver
    driver.quit()


_IMAGES_SETTLED = """
const imgs = Array.from(document.querySelectorAll('body img'));
imgs.forEach(i => { i.loading = 'eager'; });
return imgs.every(i => i.complete);
"""
_MATHJAX_DONE = """
const done = arguments[arguments.length - 1];
MathJax.startup.promise.then(() => document.fonts.ready).then(() => done(null), e => done(String(e)));
"""
_INSPECT = """
const q = s => Array.from(document.querySelectorAll(s));
const text = e => (e.innerText || e.textContent || '').trim();
return {
  status: (performance.getEntriesByType('navigation')[0] || {}).responseStatus,
  h1: q('h1').length,
  broken_images: q('body img').filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src')),
  figures: q('.cell_output img').filter(i => i.naturalWidth > 0).length,
  typeset: q('mjx-container').length,
  untypeset: q('.math').filter(e => !e.querySelector('mjx-container')).map(e => text(e).slice(0, 80)),
  math_errors: q('mjx-merror').map(e => (e.getAttribute('data-mjx-error') || text(e)).slice(0, 80)),
  // MathJax's noundefined extension shows an unknown macro as red text (in the MathML it keeps beside)
  undefined_macros: q('mjx-assistive-mml mtext[mathcolor="red"]').filter(e => !e.closest('merror'))
                      .map(e => e.textContent),
  error_outputs: q('.output.traceback, .output.error').map(e => text(e).slice(0, 200)),
  stderr_errors: q('.output.stderr').filter(e => text(e).includes('Error')).map(e => text(e).slice(0, 200)),
  traceback_text: document.body.innerText.includes('Traceback'),
  // the book must render offline: scripts, styles and images all come from the book's own server
  external: q('script[src], link[rel="stylesheet"], img').map(e => e.src || e.href)
              .filter(u => new URL(u, location.href).origin !== location.origin),
};
"""


def page_problems(driver, url: str, requests: list, *, min_figures: int = 1, min_math: int = 1) -> list[str]:
    """Load `url` in the browser and list what is wrong with it (an empty list: the page is fine)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    requests.clear()
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    problems = []
    wait = WebDriverWait(driver, TIMEOUT_S)
    if driver.execute_script("return !!document.querySelector('script[src*=\"mathjax\"]')"):
        try:  # MathJax is a deferred script; its startup promise settles once the page is typeset
            wait.until(lambda d: d.execute_script(
                "return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"))
            error = driver.execute_async_script(_MATHJAX_DONE)
            if error:
                problems.append(f"MathJax failed: {error}")
        except TimeoutException:
            problems.append("MathJax never started (tex-chtml.js not loaded?)")
    elif min_math:
        problems.append("the page loads no MathJax")
    try:
        wait.until(lambda d: d.execute_script(_IMAGES_SETTLED))
    except TimeoutException:
        problems.append("images still loading after the timeout")
    r = driver.execute_script(_INSPECT)
    if r["status"] != 200:
        problems.append(f"HTTP status {r['status']}")
    if not driver.title.strip() or not r["h1"]:
        problems.append(f"no title or heading (title {driver.title!r})")
    if r["broken_images"]:
        problems.append(f"images not loaded: {r['broken_images']}")
    if r["figures"] < min_figures:
        problems.append(f"{r['figures']} figure(s) from cell outputs, expected at least {min_figures}")
    if r["typeset"] < min_math:
        problems.append(f"{r['typeset']} typeset formula(s), expected at least {min_math}")
    if r["untypeset"]:
        problems.append(f"math left as raw TeX: {r['untypeset']}")
    if r["math_errors"]:
        problems.append(f"MathJax errors: {r['math_errors']}")
    if r["undefined_macros"]:
        problems.append(f"undefined TeX macros: {r['undefined_macros']}")
    if r["error_outputs"]:
        problems.append(f"error outputs: {r['error_outputs']}")
    if r["stderr_errors"]:
        problems.append(f"stderr outputs with an error: {r['stderr_errors']}")
    if r["traceback_text"]:
        problems.append("the page shows 'Traceback'")
    if r["external"]:
        problems.append(f"resources from elsewhere than the book's server: {r['external']}")
    failed = sorted({f"{path} ({status})" for path, status in requests if status >= 400 and path not in IGNORED_PATHS})
    if failed:
        problems.append(f"failed requests: {failed}")
    console = [e["message"] for e in driver.get_log("browser")
               if e["level"] == "SEVERE" and not any(p in e["message"] for p in IGNORED_PATHS + IGNORED_CONSOLE)]
    if console:
        problems.append(f"console errors: {console}")
    return problems


@pytest.fixture(scope="module")
def book_site(smoke_html):
    """(base_url, requests) of a local server for the smoke-scale book."""
    with serve(smoke_html) as site:
        yield site


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_loads_with_figures_and_math_and_no_error(name, browser, book_site):
    base, requests = book_site
    assert page_problems(browser, f"{base}/{name}.html", requests) == []


_LAUNCH_AND_DOWNLOADS = """
const done = arguments[arguments.length - 1];
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
const launch = links.filter(h => h.includes('colab.research.google.com') || h.includes('mybinder.org'));
const data = Array.from(document.querySelectorAll('a.bigsparse-figure-data')).map(a => a.href);
Promise.all(data.map(h => fetch(h).then(r => r.text().then(t => [h, r.status, t.split('\\n')[0]]),
                                        e => [h, 0, String(e)])))
  .then(fetched => done({launch: launch, downloads: fetched}));
"""
# Chapters whose figures carry their data (bigsparse_lib.figures.publish); the lead's chapters join as converted.
PUBLISHED_FIGURES = {"chapters/intro", "chapters/core_law", "chapters/optimal_sparsity", "chapters/limit_performance",
                     "chapters/appendix", "chapters/sweeps", "chapters/core_law_sweep", "chapters/nm_sparsity",
                     "chapters/pretrained_pruning", "chapters/ablations", "chapters/which_law"}


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("name", CHAPTERS)
def test_launch_buttons_and_figure_downloads_point_at_existing_targets(name, browser, book_site, smoke_html):
    """The smoke book is built with a repository url (conftest.py): each chapter's Colab and Binder links open
    its own launch notebook, which exists; each figure's CSV link downloads a CSV with the figure's columns."""
    from urllib.parse import parse_qs, urlsplit

    from bigsparse_lib import figures
    from conftest import TEST_REPO_URL

    base, requests = book_site
    browser.get(f"{base}/{name}.html")
    found = browser.execute_async_script(_LAUNCH_AND_DOWNLOADS)
    target = f"{book.NOTEBOOKS}/{name}.ipynb"
    owner_repo = urlsplit(TEST_REPO_URL).path.strip("/")
    colab = [h for h in found["launch"] if "colab.research.google.com" in h]
    binder = [h for h in found["launch"] if "mybinder.org" in h]
    assert colab == [f"https://colab.research.google.com/github/{owner_repo}/blob/main/{target}"], colab
    assert len(binder) == 1 and urlsplit(binder[0]).path == f"/v2/gh/{owner_repo}/main", binder
    assert parse_qs(urlsplit(binder[0]).query)["urlpath"] == [f"tree/{target}"], binder
    assert (smoke_html.parents[1] / target).is_file(), f"the launch notebook {target} was not written"
    downloads = found["downloads"]
    if name in PUBLISHED_FIGURES:
        assert downloads, f"{name}: no figure data to download"
    for href, status, header in downloads:
        assert status == 200, f"{href}: HTTP {status}"
        assert header.strip() == ",".join(figures.COLUMNS), f"{href}: not a figure's CSV ({header[:80]!r})"


@pytest.mark.slow
@pytest.mark.book
def test_landing_page_opens_the_first_chapter(browser, book_site):
    from selenium.webdriver.support.ui import WebDriverWait

    base, requests = book_site
    requests.clear()
    browser.get(f"{base}/index.html")  # jupyter-book's index.html redirects to the toc's root chapter
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: d.current_url.endswith(f"/{CHAPTERS[0]}.html"))
    assert ("/index.html", 200) in requests
    assert page_problems(browser, browser.current_url, requests) == []


@pytest.mark.slow
@pytest.mark.book
def test_screenshot_of_a_chapter_shows_the_page(browser, book_site, tmp_path):
    from PIL import Image

    base, requests = book_site
    name = CHAPTERS[1]
    assert page_problems(browser, f"{base}/{name}.html", requests) == []
    # the first figure in the middle of the window, below the text and math that lead to it
    browser.execute_script("document.querySelector('.cell_output img').scrollIntoView({block: 'center'})")
    shot = tmp_path / f"{Path(name).name}.png"
    assert browser.save_screenshot(str(shot))
    image = Image.open(shot).convert("L")
    assert image.size[0] >= 1000 and image.size[1] >= 1000
    # a rendered page has text and figures: many distinct grey levels, not a blank or single-colour canvas
    histogram = image.histogram()
    assert sum(1 for n in histogram if n > 0) > 50, "the screenshot looks blank"
    assert max(histogram) < 0.97 * sum(histogram), "the screenshot is almost one colour"


# A page made to fail every check: a missing image, one from another server, no figure, TeX that MathJax cannot parse
# (raw, an error, an undefined macro), a traceback output and a stderr block with an error.
_BROKEN_PAGE = r"""<!DOCTYPE html><html><head><title>broken</title>
<script>window.MathJax = {"options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}</script>
<script defer="defer" src="/mathjax/tex-chtml.js"></script></head><body><h1>broken</h1>
<p><span class="math notranslate nohighlight">\(a^2 + b\)</span></p>
<p><span class="math notranslate nohighlight">\(\frac{a}{\)</span></p>
<p><span class="math notranslate nohighlight">\(a^2^3\)</span></p>
<p><span class="math notranslate nohighlight">\(\nosuchmacro{x}\)</span></p>
<img src="/missing.png" alt="missing"><img src="http://127.0.0.2:9/elsewhere.png" alt="external">
<div class="output traceback"><pre>ZeroDivisionError: division by zero</pre></div>
<div class="output stderr"><pre>RuntimeError: something went wrong</pre></div>
<pre>Traceback (most recent call last):</pre>
</body></html>"""
_GOOD_PAGE = r"""<!DOCTYPE html><html><head><title>good</title>
<script>window.MathJax = {"options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}</script>
<script defer="defer" src="/mathjax/tex-chtml.js"></script></head><body><h1>good</h1>
<p><span class="math notranslate nohighlight">\(L(S, N, D) = (a_S (1 - S)^{b_S} + c_S) \cdot N^{-b_N}\)</span></p>
<div class="cell_output"><img src="/dot.svg" alt="figure"></div>
<div class="output stderr"><pre>UserWarning: harmless</pre></div>
</body></html>"""
_DOT = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle cx="5" cy="5" r="4"/></svg>'


def test_checker_reports_a_broken_page(browser, tmp_path):
    """Each check fails where it should, on pages served with the same offline MathJax as the book."""
    mathjax = Path(importlib.metadata.distribution("sphinx-mathjax-offline")
                   .locate_file("sphinx-mathjax-offline/static/mathjax"))
    assert (mathjax / "tex-chtml.js").is_file()
    (tmp_path / "mathjax").symlink_to(mathjax, target_is_directory=True)
    (tmp_path / "dot.svg").write_bytes(_DOT)
    pages = {"/broken.html": _BROKEN_PAGE.encode(), "/good.html": _GOOD_PAGE.encode()}
    with serve(tmp_path, pages) as (base, requests):
        assert page_problems(browser, f"{base}/good.html", requests) == []
        problems = page_problems(browser, f"{base}/broken.html", requests)
        missing_page = page_problems(browser, f"{base}/no-such-chapter.html", requests, min_figures=0, min_math=0)
    found = "\n".join(problems)
    for expected in ("images not loaded: ['/missing.png', 'http://127.0.0.2:9/elsewhere.png']", "0 figure(s)", r"raw TeX: ['\\(\\frac{a}{\\)']",
                     "MathJax errors: ['Double exponent", r"undefined TeX macros: ['\\nosuchmacro']",
                     "error outputs: ['ZeroDivisionError", "stderr outputs with an error: ['RuntimeError",
                     "the page shows 'Traceback'", "from elsewhere than the book's server", "failed requests: ['/missing.png (404)']", "console errors"):
        assert expected in found, f"{expected!r} not reported; got:\n{found}"
    assert len(problems) == 11, found
    assert "HTTP status 404" in missing_page, missing_page

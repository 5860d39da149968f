"""Links that work (issue 15): every href and src of the built book, the repository setting, the launch notebooks.

`link_problems` walks every `href` and `src` of every page in `_build/html`:
- internal links must resolve to a file in `_build/html` (anchors and query strings dropped);
- external links must go to a host of `ALLOWED_HOSTS`, the places the book means to link to;
- links into the repository (GitHub blob/tree, Colab, Binder) must name the configured
  repository and branch, and a path that exists in the tree (`notebooks/...`: in the
  launch-notebook folder the build wrote).
The smoke book is built with a (made-up) repository url, so that its buttons are there to check.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import nbformat
import pytest

from bigsparse_lib import book
from bigsparse_lib.errors import InputError

from conftest import TEST_REPO_URL

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_HOSTS = ("github.com", "colab.research.google.com", "mybinder.org", "jupytext.readthedocs.io",
                 "papermill.readthedocs.io", "jupyterbook.org", "www.sphinx-doc.org", "pydata-sphinx-theme.readthedocs.io",
                 "sphinx-book-theme.readthedocs.io", "executablebooks.org", "doi.org", "arxiv.org",
                 "www.cerebras.net")  # the last: a bibliography entry's url (references.bib)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


def _repo_path(url: str, repo_url: str, branch: str) -> str | None:
    """The repository path a GitHub, Colab or Binder link opens; None if it opens no path; raises on a wrong repo."""
    owner_repo = urlsplit(repo_url).path.strip("/")
    parts = urlsplit(url)
    if parts.hostname == "mybinder.org":
        m = re.fullmatch(r"/v2/gh/([^/]+/[^/]+)/([^/]+)", parts.path)
        if not m or m.group(1) != owner_repo or m.group(2) != branch:
            raise ValueError(f"Binder link to another repository or branch: {url}")
        urlpath = parse_qs(parts.query).get("urlpath", [""])[0]
        return re.sub(r"^(lab/)?tree/", "", urlpath) or None
    path = parts.path
    if parts.hostname == "colab.research.google.com":
        path = path.removeprefix("/github")
    elif parts.hostname != "github.com":
        return None
    m = re.fullmatch(r"/([^/]+/[^/]+)(?:/(blob|tree|edit|raw)/([^/]+)/(.*))?(/issues.*)?/?", path)
    if not m or m.group(1) != owner_repo:
        return None  # another GitHub repository (the data's sources): an external link
    if m.group(2) is None:
        return None  # the repository itself, or its issues
    if m.group(3) != branch:
        raise ValueError(f"link to branch {m.group(3)!r}, not the book's {branch!r}: {url}")
    return unquote(m.group(4))


def link_problems(html: Path, *, repo_url: str, branch: str, tree: Path, notebooks: Path) -> list[str]:
    """Every broken, unexpected or repository-missing href/src in the built book (empty: all fine)."""
    problems = []
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] == "_static":
            continue  # the theme's Jinja macro templates, copied as they are, not pages
        parser = _Links()
        parser.feed(page.read_text(errors="replace"))
        where = page.relative_to(html).as_posix()
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme in ("http", "https"):
                if parts.hostname not in ALLOWED_HOSTS:
                    problems.append(f"{where}: external link to a host not allowed: {link}")
                    continue
                try:
                    path = _repo_path(link, repo_url, branch) if repo_url else None
                except ValueError as e:
                    problems.append(f"{where}: {e}")
                    continue
                if path is not None:
                    inside = (notebooks / path.removeprefix(f"{book.NOTEBOOKS}/")
                              if path.startswith(f"{book.NOTEBOOKS}/") else tree / path)
                    if not inside.exists():
                        problems.append(f"{where}: link to a repository path that does not exist: {path} ({link})")
            elif parts.scheme in ("mailto", "data", "javascript"):
                continue
            elif parts.scheme:
                problems.append(f"{where}: link with scheme {parts.scheme!r}: {link}")
            elif parts.path:
                target = (page.parent / unquote(parts.path)).resolve()
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_file() or html.resolve() not in target.parents:
                    problems.append(f"{where}: internal link to a missing file: {link}")
    return problems


# ---- the repository setting and the launch notebooks (fast) -------------------------------------------


def test_repository_url_is_one_setting_empty_by_default_and_overridable(monkeypatch):
    monkeypatch.delenv(book.REPO_ENV, raising=False)
    assert book.repository(ROOT) == ("", "main")
    monkeypatch.setenv(book.REPO_ENV, "https://github.com/a/b.git")
    assert book.repository(ROOT) == ("https://github.com/a/b", "main")
    assert book.repository(ROOT, "https://github.com/c/d/") == ("https://github.com/c/d", "main")  # --repo-url wins
    with pytest.raises(InputError, match="https://github.com/OWNER/REPO"):
        book.repository(ROOT, "https://gitlab.com/a/b")


def test_buttons_only_with_a_repository_url():
    bare = book.staged_config(ROOT, "")
    assert "launch_buttons" not in bare
    assert not bare["html"]["use_repository_button"] and not bare["html"]["use_issues_button"]
    set_ = book.staged_config(ROOT, "https://github.com/a/b")
    assert set_["repository"]["url"] == "https://github.com/a/b" and set_["repository"]["path_to_book"] == "notebooks"
    assert set_["html"]["use_repository_button"] and set_["html"]["use_issues_button"]
    assert set_["launch_buttons"]["colab_url"] and set_["launch_buttons"]["binderhub_url"]


def test_launch_notebooks_install_first_and_run_at_smoke(tmp_path):
    written = book.write_notebooks("https://github.com/a/b", "pub", root=ROOT, out=tmp_path)
    assert sorted(p.relative_to(tmp_path).with_suffix("").as_posix() for p in written) == sorted(book.chapters(ROOT))
    for path in written:
        nb = nbformat.read(path, as_version=4)
        setup = nb.cells[0]
        assert setup.cell_type == "code" and 'find_spec("bigsparse_lib") is None' in setup.source
        assert "git+https://github.com/a/b@pub" in setup.source
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and re.search(r'^scale = "smoke"', params[0].source, re.M), path
        compile(setup.source, str(path), "exec")


def test_setup_cell_is_a_no_op_where_bigsparse_imports(tmp_path, monkeypatch):
    import subprocess

    nb = book.launch_notebook(book.chapters(ROOT)[0], "https://github.com/a/b", "main", root=ROOT)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.chdir(tmp_path)
    exec(compile(nb.cells[0].source, "setup", "exec"), {})
    assert calls == []  # bigsparse_lib imports here: nothing installed


def test_binder_builds_from_the_repository_files():
    assert (ROOT / "environment.yml").is_file()
    post = (ROOT / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post
    assert (ROOT / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"


def test_citation_and_license():
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    pref = cff["preferred-citation"]
    assert pref["title"] == "Scaling Laws for Sparsely-Connected Foundation Models" and pref["year"] == 2024
    assert [a["family-names"] for a in pref["authors"]] == ["Frantar", "Riquelme", "Houlsby", "Alistarh", "Evci"]
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    appendix = (ROOT / "chapters" / "appendix.md").read_text()
    for needed in ("google-research/jaxpruner", "Apache License 2.0", "epoch-research/analyzing-chinchilla",
                   "besiroglu2024chinchilla", "CITATION.cff"):
        assert needed in appendix


def test_intro_table_lists_every_chapter():
    intro = (ROOT / "chapters" / "intro.md").read_text()
    table = intro[intro.index("## How to read it"):intro.index("The symbols are the paper's")]
    # a row links its chapter as [title](name), or {doc}`title <name>` (which renders as text, not a broken
    # link, until the chapter exists: which_law arrives with issue 14)
    rows = [line for line in table.splitlines() if line.startswith("| [") or line.startswith("| {doc}")]
    linked = [re.search(r"\]\(([^)]+)\)|<([^>]+)>`", row).group(1, 2) for row in rows]
    linked = [a or b for a, b in linked]
    others = [Path(n).name for n in book.chapters(ROOT)[1:]]
    assert set(others) <= set(linked), f"chapters missing from the intro's table: {set(others) - set(linked)}"
    assert "which_law" in linked  # added after core_law by issue 14
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), row
        assert "released data" in cells[3] or "our toy runs" in cells[3] or "Table 7" in cells[3], row


# ---- the checker itself ---------------------------------------------------------------------------


def test_link_checker_reports_each_kind_of_bad_link(tmp_path):
    html, tree, nbs = tmp_path / "html", tmp_path / "tree", tmp_path / "nbs"
    (html / "chapters").mkdir(parents=True)
    (tree / "chapters").mkdir(parents=True)
    (tree / "chapters" / "a.md").write_text("x")
    (nbs / "chapters").mkdir(parents=True)
    (nbs / "chapters" / "a.ipynb").write_text("{}")
    (html / "_static").mkdir()
    (html / "_static" / "x.css").write_text("")
    repo = "https://github.com/o/r"
    good = ['<a href="../_static/x.css">', '<a href="#top">', f'<a href="{repo}">', f'<a href="{repo}/issues">',
            f'<a href="{repo}/blob/main/chapters/a.md">', '<a href="https://github.com/google-research/jaxpruner">',
            '<a href="https://colab.research.google.com/github/o/r/blob/main/notebooks/chapters/a.ipynb">',
            '<a href="https://mybinder.org/v2/gh/o/r/main?urlpath=tree/notebooks/chapters/a.ipynb">']
    (html / "chapters" / "good.html").write_text("".join(good))
    assert link_problems(html, repo_url=repo, branch="main", tree=tree, notebooks=nbs) == []
    bad = ['<img src="missing.png">', '<a href="https://example.com/x">',
           f'<a href="{repo}/blob/main/chapters/a.ipynb">',
           '<a href="https://colab.research.google.com/github/o/r/blob/main/notebooks/chapters/b.ipynb">',
           '<a href="https://mybinder.org/v2/gh/o/other/main?urlpath=tree/notebooks/chapters/a.ipynb">',
           f'<a href="{repo}/blob/dev/chapters/a.md">']
    (html / "chapters" / "bad.html").write_text("".join(bad))
    found = link_problems(html, repo_url=repo, branch="main", tree=tree, notebooks=nbs)
    assert len(found) == len(bad), found
    for expected in ("missing file: missing.png", "host not allowed: https://example.com/x",
                     "does not exist: chapters/a.ipynb", "does not exist: notebooks/chapters/b.ipynb",
                     "another repository", "branch 'dev'"):
        assert any(expected in f for f in found), (expected, found)


# ---- the built book -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.book
def test_every_link_of_the_built_book_resolves(smoke_html):
    notebooks = smoke_html.parents[1] / book.NOTEBOOKS
    problems = link_problems(smoke_html, repo_url=TEST_REPO_URL, branch="main", tree=ROOT, notebooks=notebooks)
    assert problems == [], "\n".join(problems[:40])
    # the buttons are there: every chapter page launches its own notebook on Colab and Binder
    for name in book.chapters(ROOT):
        page = (smoke_html / f"{name}.html").read_text()
        target = f"notebooks/{name}.ipynb"
        assert f"colab.research.google.com/github/bigsparse-test/bigsparse/blob/main/{target}" in page, name
        assert f"mybinder.org/v2/gh/bigsparse-test/bigsparse/main?urlpath=tree/{target}" in page, name
        assert (notebooks / f"{name}.ipynb").is_file()

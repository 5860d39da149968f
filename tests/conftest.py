"""Shared fixtures. The released paper data are found by `paper.locate` (BIGSPARSE_PAPER_DATA,
../shared/paper-data, the cache); a test that needs them skips, with the reason, when they are absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
TEST_REPO_URL = "https://github.com/bigsparse-test/bigsparse"  # the smoke book's repository.url (not a real one)


@pytest.fixture(scope="session")
def released():
    """released(name) -> tidy DataFrame of the released data set, or skip."""
    from bigsparse_lib import paper

    def load(name: str):
        if not paper.have_released(name):
            pytest.skip(f"released data {name!r} not found locally; set {paper.ENV_VAR} to its folder")
        return paper.load_released(name)

    return load


@pytest.fixture(scope="session")
def smoke_stage(tmp_path_factory):
    """The folder the chapters are executed into at smoke scale, shared by the book tests
    (tests/test_book.py executes into it chapter by chapter; `smoke_html` then finds them up to date)."""
    return tmp_path_factory.mktemp("smoke-stage")


@pytest.fixture(scope="session")
def smoke_html(smoke_stage, tmp_path_factory, released):
    """The book built once per session at smoke scale: the `_build/html` folder (static and browser tests)."""
    from bigsparse_lib import book

    released("t5"), released("vit"), released("chinchilla")  # the chapters read them; skip without them
    out = tmp_path_factory.mktemp("smoke-book")
    # with a repository url, so that the launch and repository buttons are there to check; the launch
    # notebooks go to <out>/notebooks, standing in for the repository's notebooks/ (tests/test_links.py)
    book.build("smoke", root=ROOT, stage=smoke_stage, output=out, repo_url=TEST_REPO_URL,
               notebooks=out / book.NOTEBOOKS)
    return out / "_build" / "html"

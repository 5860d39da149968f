"""Shared fixtures. The released paper data are found by `paper.locate` (BIGSPARSE_PAPER_DATA,
../shared/paper-data, the cache); a test that needs them skips, with the reason, when they are absent."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def released():
    """released(name) -> tidy DataFrame of the released data set, or skip."""
    from bigsparse_lib import paper

    def load(name: str):
        if not paper.have_released(name):
            pytest.skip(f"released data {name!r} not found locally; set {paper.ENV_VAR} to its folder")
        return paper.load_released(name)

    return load

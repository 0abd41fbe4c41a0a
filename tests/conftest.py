"""Shared fixtures: a real library DB file per test and an isolated data dir (never the user's)."""

from __future__ import annotations

import pytest
from musicssl.engine import db as dbmod


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Keep every test away from the real user data folder and from MUSICSSL_DB."""
    monkeypatch.setenv("MUSICSSL_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("MUSICSSL_DB", raising=False)


@pytest.fixture
def db(tmp_path):
    """A fresh, fully migrated library DB on disk."""
    database = dbmod.connect(tmp_path / "library.db")
    yield database
    database.conn.close()


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is faster than two and does not fight other jobs."""
    import torch  # here, not at the top: most tests never need torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

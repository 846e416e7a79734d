"""Fixtures shared by the test modules."""
import pytest

from pencils import cache


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """A private cache folder and an empty in-process memo."""
    monkeypatch.setenv("DSM_CACHE_DIR", str(tmp_path / "cache"))
    cache.clear_memory()
    yield tmp_path / "cache"
    cache.clear_memory()

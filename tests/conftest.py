"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

_SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real feed files of ``/work/shared/data`` (read-only; see its README)."""
    path = _SHARED_DATA.resolve()
    if not path.is_dir():
        pytest.fail(f"shared feed data not found at {path}")
    return path

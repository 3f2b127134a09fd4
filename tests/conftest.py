"""Shared test set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MODELS_FILE = FIXTURES / "models.py"


@pytest.fixture
def models_file() -> Path:
    """The path of the tiny-models file, for `file.py:attr` sources."""
    return MODELS_FILE

"""Helpers for the media-stream tests: recorded carrier messages from tests/data/media_streams."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "media_streams"


def recorded(name: str) -> list[str]:
    """The messages of a recording, one WebSocket text message (or webhook body) a line.

    Lines starting with ``#`` are the header saying where the recording comes from.
    """
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def recorded_json(name: str) -> list[dict[str, Any]]:
    """The recording's lines parsed as JSON objects."""
    return [json.loads(line) for line in recorded(name)]


@pytest.fixture(name="recorded")
def recorded_fixture() -> Callable[[str], list[str]]:
    """``recorded(name)``: the text messages of a recording."""
    return recorded


@pytest.fixture(name="recorded_json")
def recorded_json_fixture() -> Callable[[str], list[dict[str, Any]]]:
    """``recorded_json(name)``: the recording's messages parsed as JSON objects."""
    return recorded_json

"""Suite-wide: the compiled frame-path modules (gateway/native.py) must be built from the
sources under test, or the suite would test old code."""

from __future__ import annotations

import pytest

from gateway import native


def pytest_configure(config: pytest.Config) -> None:
    del config
    stale = native.stale()
    if stale:
        raise pytest.UsageError(
            "compiled modules older than their sources: "
            + ", ".join(stale)
            + ". Rebuild them (scripts/compile.sh) or remove them (scripts/compile.sh --clean)."
        )


def pytest_report_header(config: pytest.Config) -> str:
    del config
    return (
        f"telepath: {len(native.compiled())} of {len(native.COMPILED)} frame-path modules "
        "compiled (gateway/native.py)"
    )

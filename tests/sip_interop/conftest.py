"""One gateway process (SIP on UDP, TCP and TLS) shared by the interop tests of a module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sip_interop.support import Gateway, gateway, tls_certificate


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tls_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]) -> Iterator[Gateway]:
    with gateway(tmp_path_factory.mktemp("gateway"), tls=tls_files) as running:
        yield running

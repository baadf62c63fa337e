"""The layer rules of docs/architecture.md, checked on the source tree.

media/ imports nothing of ours; ingress/* and providers/* import only media (and
themselves), never each other, gateway or models; models imports nothing of ours; within
ingress/sip only transport/ and call.py may touch asyncio, sockets, clocks or randomness.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"gateway", "ingress", "providers", "models", "media"}

ALLOWED: dict[str, set[str]] = {
    "media": {"media"},
    "models": {"models"},
    "ingress.sip": {"media", "ingress.sip"},
    "ingress.media_streams": {"media", "ingress.media_streams"},
    "providers": {"media", "providers"},
    "gateway": OURS,
}
IO_MODULES = {"asyncio", "socket", "time", "secrets", "random", "ssl", "selectors"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _layer(module: str) -> str | None:
    if module.startswith("ingress.sip") or module == "ingress.sip":
        return "ingress.sip"
    if module.startswith("ingress.media_streams"):
        return "ingress.media_streams"
    top = module.split(".")[0]
    return top if top in OURS else None


def _source_files() -> list[Path]:
    files: list[Path] = []
    for top in ("media", "models", "ingress", "providers", "gateway"):
        files.extend(sorted((ROOT / top).rglob("*.py")))
    return files


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layer_imports(path: Path) -> None:
    own = _layer(_module_name(path))
    if own is None or own == "gateway":
        return
    for imported in _imports(path):
        layer = _layer(imported)
        if layer is None:
            continue
        allowed = ALLOWED[own]
        assert layer in allowed, (
            f"{path.relative_to(ROOT)} imports {imported} ({own} may import {sorted(allowed)})"
        )


def test_sip_core_is_sans_io() -> None:
    sip = ROOT / "ingress" / "sip"
    offenders = []
    for path in sorted(sip.rglob("*.py")):
        rel = path.relative_to(sip)
        if rel.parts[0] == "transport" or rel.name in {"call.py", "runner.py"}:
            continue
        bad = {m.split(".")[0] for m in _imports(path)} & IO_MODULES
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert not offenders, "SIP protocol core touches I/O, clocks or randomness: " + "; ".join(
        offenders
    )


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself must be able to fail."""
    bad = tmp_path / "bad.py"
    bad.write_text("import gateway.settings\nfrom ingress.sip import message\nimport asyncio\n")
    assert {_layer(m) for m in _imports(bad)} == {"gateway", "ingress.sip", None}

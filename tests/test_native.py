"""The compiled build (gateway/native.py): what CI tests, and how a stale one is caught."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import operator
import os
from pathlib import Path
from typing import Any

import pytest

from gateway import native, playout
from gateway.playout import Handout
from ingress.sip.rtp import pacer
from ingress.sip.rtp.jitter import PlayoutFrame
from ingress.sip.rtp.packet import HeaderExtension, RtpPacket
from media.frames import PCMA, PCMU, AudioFormat, AudioFrame, Encoding, MarkPlayed
from providers.custom_ws.messages import MediaReceived
from providers.events import AgentAudio


@pytest.mark.skipif(
    not os.environ.get("CI") or os.environ.get("TELEPATH_COMPILE") == "0",
    reason="outside CI the checkout may run pure Python (scripts/compile.sh builds it)",
)
def test_ci_runs_every_frame_path_module_compiled() -> None:
    # scripts/test.sh compiles before the suite; the suite must test what production runs.
    assert native.compiled() == list(native.COMPILED)
    assert native.stale() == []


def test_every_listed_module_exists_and_imports() -> None:
    for module in native.COMPILED:
        assert importlib.import_module(module).__name__ == module


def test_a_changed_source_is_stale_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    source = tmp_path / "bridge.py"
    source.write_text("x = 1\n")
    record = {"gateway.bridge": native.source_digest(str(source))}
    sources = {"gateway.bridge": str(source)}
    assert native.changed_since_build(sources, record) == []
    source.write_text("x = 2\n")
    assert native.changed_since_build(sources, record) == ["gateway.bridge"]


def test_a_compiled_module_with_no_record_is_stale(tmp_path: Path) -> None:
    source = tmp_path / "pacer.py"
    source.write_text("y = 1\n")
    assert native.changed_since_build({"ingress.sip.rtp.pacer": str(source)}, {}) == [
        "ingress.sip.rtp.pacer"
    ]


def test_a_module_without_its_source_beside_it_is_not_stale(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.py")
    assert native.changed_since_build({"media.frames": missing}, {}) == []


def _awaits_in(nodes: list[ast.stmt]) -> list[int]:
    lines = []
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Await, ast.AsyncWith, ast.AsyncFor)):
                lines.append(sub.lineno)
    return lines


def test_no_compiled_coroutine_awaits_while_an_exception_propagates() -> None:
    # A coroutine compiled by mypyc that awaits inside `finally` (or an `except` block)
    # leaks the exception being handled into later awaits of other coroutines: a
    # cancelled call's CancelledError came out of the next call's bridge. The compiled
    # modules await after the handler instead (gateway.bridge.CallBridge.run).
    found = []
    for module in native.COMPILED:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.submodule_search_locations is None
        package = importlib.util.find_spec(module.rpartition(".")[0])
        assert package is not None and package.submodule_search_locations
        path = Path(package.submodule_search_locations[0]) / (module.rpartition(".")[2] + ".py")
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Try):
                    blocks = [node.finalbody, *(handler.body for handler in node.handlers)]
                    found += [f"{path}:{line}" for block in blocks for line in _awaits_in(block)]
    assert found == []


# The per-frame values whose __init__ is written out (so that mypyc compiles it instead of
# dataclasses generating an interpreted one): each must still take exactly its fields, by
# position and by name, with the fields' defaults, and stay frozen where it was.
_FRAME = AudioFrame(PCMU, b"\xff" * 160, 20, 1.5)
_WRITTEN_OUT: list[tuple[type[Any], dict[str, Any]]] = [
    (AudioFrame, {"format": PCMU, "payload": b"\x01", "timestamp": 40, "received_at": 2.5}),
    (MarkPlayed, {"name": "tp:0:20:item"}),
    (
        RtpPacket,
        {
            "payload_type": 0,
            "sequence_number": 7,
            "timestamp": 160,
            "ssrc": 0x1234,
            "payload": b"\x02",
            "marker": True,
            "csrc": (1, 2),
            "extension": HeaderExtension(0xBEDE, b"\x00" * 4),
            "padding": b"\x00\x02",
        },
    ),
    (Handout, {"mark": "tp:0:20:item", "frame": _FRAME, "item_id": "item"}),
    (playout._Queued, {"item_id": "item", "frame": _FRAME}),
    (pacer._Frame, {"payload": b"\x03", "ms": 20.0, "arrived": 3.5}),
    (pacer._Mark, {"name": "m1"}),
    (AgentAudio, {"frame": _FRAME, "item_id": "item"}),
    (MediaReceived, {"payload": b"\x04"}),
    (PlayoutFrame, {"payload": b"\x05", "sequence_number": 9, "timestamp": 320, "marker": True}),
]


@pytest.mark.parametrize(("cls", "values"), _WRITTEN_OUT, ids=lambda v: getattr(v, "__name__", ""))
def test_written_out_inits_take_exactly_the_dataclass_fields(
    cls: type[Any], values: dict[str, Any]
) -> None:
    fields = dataclasses.fields(cls)
    assert [field.name for field in fields] == list(values)
    by_name = cls(**values)
    by_position = cls(*values.values())
    for field in fields:
        assert getattr(by_name, field.name) == values[field.name], field.name
        assert getattr(by_position, field.name) == values[field.name], field.name
    required = {f.name: values[f.name] for f in fields if f.default is dataclasses.MISSING}
    defaults = cls(**required)
    for field in fields:
        if field.default is not dataclasses.MISSING:
            assert getattr(defaults, field.name) == field.default, field.name
    assert dataclasses.replace(by_name) == by_name
    if cls.__dataclass_params__.frozen:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(by_name, fields[0].name, values[fields[0].name])
        assert hash(by_name) == hash(by_position)


def test_written_out_format_equality_means_equal_fields() -> None:
    # AudioFormat's __eq__ and __hash__ are written out (compared per frame); they must
    # mean what the dataclass's did: equal fields, equal hashes, and no equality with
    # other types (a tuple of the same fields included).
    rebuilt = AudioFormat(Encoding.PCMU, 8000)
    assert operator.eq(rebuilt, PCMU) and not operator.ne(rebuilt, PCMU)
    assert hash(rebuilt) == hash(PCMU)
    assert operator.ne(PCMU, PCMA) and operator.ne(PCMU, AudioFormat(Encoding.PCMU, 16000))
    assert operator.ne(PCMU, (Encoding.PCMU, 8000)) and operator.ne(PCMU, "pcmu/8000")
    assert {PCMU: 1}[AudioFormat.parse("pcmu/8000")] == 1
    assert len({PCMU, rebuilt, PCMA}) == 2

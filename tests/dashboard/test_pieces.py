"""The dashboard's pure pieces: SVG charts, form → API body, display shapes."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.api.schemas import TrunkCreate, TrunkUpdate, parse_model
from gateway.dashboard import charts
from gateway.dashboard.forms import connection_body, parse_headers, parse_numbers, sticky_values
from gateway.dashboard.views import seconds, timeline_rows, turn_latencies, when
from gateway.services.errors import InvalidRequest

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ElementTree.Element:
    # Our SVG has no xmlns (it is inline HTML); add one so it parses as XML.
    return ElementTree.fromstring(
        str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    )


@given(st.floats(min_value=1e-6, max_value=1e12, allow_nan=False))
def test_nice_ceiling_is_a_round_number_just_above(value: float) -> None:
    top = charts.nice_ceiling(value)
    assert top >= value * (1 - 1e-9)
    assert top <= value * 2.5 * (1 + 1e-9)
    mantissa = top / 10 ** math.floor(math.log10(top) + 1e-12)
    assert any(math.isclose(mantissa, m) for m in (1.0, 2.0, 2.5, 5.0, 10.0))


@pytest.mark.parametrize("value", [0.0, -3.0, math.nan, math.inf])
def test_nice_ceiling_of_nothing_is_one(value: float) -> None:
    assert charts.nice_ceiling(value) == 1.0


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=80))
def test_bar_heights_are_proportional_and_inside_the_plot(values: list[float]) -> None:
    labels = [f"h{i}" for i in range(len(values))]
    root = _parse(charts.bar_chart("t", labels, values))
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == len(values)
    top = charts.nice_ceiling(max(values))
    for bar, value in zip(bars, values, strict=True):
        height = float(bar.get("height", "nan"))
        y = float(bar.get("y", "nan"))
        assert height == pytest.approx((charts.HEIGHT - 12 - 34) * value / top, abs=0.06)
        assert y >= 12 - 0.06 and y + height <= charts.HEIGHT - 34 + 0.06


def test_line_chart_gaps_and_bridges() -> None:
    series = [charts.Series("avg", "line avg", [100.0, None, 300.0, 200.0])]
    gapped = _parse(charts.line_chart("t", ["a", "b", "c", "d"], series))
    assert len(gapped.findall(f"{SVG}circle")) == 1  # "a" stands alone
    assert len(gapped.findall(f"{SVG}polyline")) == 1  # c-d
    bridged = _parse(charts.line_chart("t", ["a", "b", "c", "d"], series, bridge_gaps=True))
    lines = bridged.findall(f"{SVG}polyline")
    assert len(lines) == 1 and len(lines[0].get("points", "").split()) == 3


def test_charts_escape_labels_and_are_accessible() -> None:
    markup = charts.bar_chart('<script>alert("x")</script>', ["<b>&"], [1.0])
    assert "<script>" not in markup and "<b>" not in markup
    root = _parse(markup)
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
    breakdown = _parse(charts.breakdown_bar("blame", [("Caller", 3), ("AI agent", 1)]))
    widths = [float(r.get("width", "0")) for r in breakdown.findall(f"{SVG}rect")]
    assert widths == pytest.approx([charts.WIDTH * 0.75, charts.WIDTH * 0.25])


def test_openai_form_becomes_a_valid_create_body() -> None:
    form = {
        "ai_provider": "openai",
        "name": "Front desk",
        "openai_api_key": " sk-abc ",
        "openai_model": "gpt-realtime",
        "openai_voice": "",
        "system_prompt": "Be brief.",
        "elevenlabs_agent_id": "ignored: another provider's field",
        "sip_username": "front-desk",
        "sip_password": "",
        "inbound_numbers": "+14155550100,\n+14155550101 ",
        "webhook_url": "",
    }
    body = connection_body(form, editing=False)
    assert body == {
        "ai_provider": "openai",
        "name": "Front desk",
        "sip_username": "front-desk",
        "openai_api_key": "sk-abc",
        "system_prompt": "Be brief.",
        "inbound_numbers": ["+14155550100", "+14155550101"],
        "provider_config": {"model": "gpt-realtime"},
    }
    parse_model(TrunkCreate, body)


def test_editing_keeps_blank_secrets_and_clears_blank_fields() -> None:
    form = {
        "ai_provider": "custom",
        "name": "",
        "custom_endpoint": "wss://agent.example/voice",
        "custom_headers": "",
        "custom_dialect": "twilio",
        "custom_system_prompt": "",
        "webhook_url": "",
        "webhook_secret": "",
        "inbound_numbers": "",
    }
    body = connection_body(form, editing=True)
    assert "custom_headers" not in body and "webhook_secret" not in body and "name" not in body
    assert body["webhook_url"] is None and body["system_prompt"] is None
    assert body["inbound_numbers"] is None
    assert body["provider_config"] == {"dialect": "twilio"}
    parse_model(TrunkUpdate, body)


def test_custom_headers_lines() -> None:
    assert parse_headers("Authorization: Bearer a:b\n\nX-Tenant:  42 ") == {
        "Authorization": "Bearer a:b",
        "X-Tenant": "42",
    }
    with pytest.raises(InvalidRequest, match="Name: value"):
        parse_headers("just text")
    with pytest.raises(InvalidRequest):
        parse_headers(": empty name")
    with pytest.raises(InvalidRequest, match="at most"):
        parse_headers("\n".join(f"X-{i}: v" for i in range(41)))


@given(st.text(max_size=300))
def test_form_parsing_never_crashes(text: str) -> None:
    for provider in ("openai", "elevenlabs", "custom", "echo", text[:10]):
        form = {
            "ai_provider": provider,
            "custom_headers": text,
            "inbound_numbers": text,
            "sip_username": text,
            "custom_endpoint": text,
        }
        try:
            parse_model(TrunkCreate, connection_body(form, editing=False))
        except InvalidRequest as error:
            assert error.message
    assert all(n and not re.search(r"[\s,;]", n) for n in parse_numbers(text))


def test_sticky_values_never_echo_secrets() -> None:
    kept = sticky_values(
        {"openai_api_key": "sk", "webhook_secret": "s", "csrf_token": "t", "name": "n"}
    )
    assert kept == {"name": "n"}


def test_turn_latencies_from_the_bridge_timeline() -> None:
    events = [
        SimpleNamespace(name="answered", detail={}, offset_ms=800),
        SimpleNamespace(
            name="turn",
            detail={"detail": "item=a ai_latency_ms=420.0 playout_ms=423.1"},
            offset_ms=2000,
        ),
        SimpleNamespace(name="turn", detail={"ai_latency_ms": 610.5}, offset_ms=6000),
        SimpleNamespace(name="turn", detail="item=c ai_latency_ms=380", offset_ms=9000),
        SimpleNamespace(name="turn", detail={"detail": "no figure"}, offset_ms=9500),
    ]
    assert turn_latencies(events) == [420.0, 610.5, 380.0]
    rows = timeline_rows(events)
    assert rows[1] == {
        "offset": "+2.000 s",
        "name": "turn",
        "detail": "item=a ai_latency_ms=420.0 playout_ms=423.1",
    }
    assert rows[2]["detail"] == "ai_latency_ms=610.5"


def test_display_formats() -> None:
    assert seconds(None) == "—" and seconds(45.2) == "45s" and seconds(65) == "1m 05s"
    assert seconds(3725) == "1h 02m 05s"
    assert when(None) == "—"
    assert when("2026-11-21T14:05:54Z") == "2026-11-21 14:05:54 UTC"
    assert when("not a date") == "not a date"

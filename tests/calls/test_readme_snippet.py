"""The README's webhook verification snippet verifies what Telepath sends (keeps it true)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from gateway.services.webhooks import sign

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet_verify() -> Callable[..., bool]:
    text = README.read_text()
    block = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", text, re.S)
    assert block is not None, "the README lost its verification snippet"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own docs
    return cast(Callable[..., bool], namespace["verify"])


def test_the_readme_snippet_accepts_our_signature_and_rejects_tampering() -> None:
    verify = _snippet_verify()
    body = b'{"event":"call.ended","call_id":"call_01abc"}'
    now = int(time.time())
    header = sign("whsec-readme", body, now)
    assert verify("whsec-readme", header, body)
    assert not verify("whsec-readme", header, body + b" ")
    assert not verify("another-secret", header, body)
    stale = sign("whsec-readme", body, now - 3600)
    assert not verify("whsec-readme", stale, body)

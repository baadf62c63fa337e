"""``--require-https``: plain HTTP is refused; X-Forwarded-Proto counts only from trusted proxies."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.support.live_server import live_server


def test_require_https_and_trusted_proxies(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 't.db'}"
    with live_server(db, args=["--require-https", "--trusted-proxies", "127.0.0.1/32"]) as server:
        key = server.api_key()
        auth = {"Authorization": f"Bearer {key}"}
        plain = requests.get(server.url + "/v1/trunks", headers=auth, timeout=10)
        assert plain.status_code == 400
        assert plain.json()["error"]["code"] == "https_required"
        proxied = requests.get(
            server.url + "/v1/trunks", headers={**auth, "X-Forwarded-Proto": "https"}, timeout=10
        )
        assert proxied.status_code == 200
    # The same header from an untrusted address is ignored.
    with live_server(db, args=["--require-https", "--trusted-proxies", "10.9.9.0/24"]) as server:
        spoofed = requests.get(
            server.url + "/v1/trunks", headers={**auth, "X-Forwarded-Proto": "https"}, timeout=10
        )
        assert spoofed.status_code == 400
        assert spoofed.json()["error"]["code"] == "https_required"

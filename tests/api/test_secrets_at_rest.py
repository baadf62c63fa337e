"""Provider keys are sealed at rest, the key file is private, and the master key rotates."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import requests

from tests.support.live_server import live_server, telepath

SECRETS = {
    "openai_api_key": "sk-openai-PLAINTEXT-MARKER-1111",
    "webhook_secret": "whsec-PLAINTEXT-MARKER-2222",
    "sip_password": "Plaintext-Marker-3333!",
}


def _create(url: str, key: str) -> dict[str, object]:
    body = {
        "name": "Secret holder",
        "ai_provider": "openai",
        "sip_username": "secret-holder",
        "webhook_url": "https://example.com/hook",
        **SECRETS,
    }
    response = requests.post(
        url + "/v1/trunks", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _database_bytes(directory: Path) -> bytes:
    # The main file and any WAL/SHM side files: every byte SQLite wrote.
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.name.startswith("t.db"))


def test_no_plaintext_secret_in_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with live_server(f"sqlite://{db}") as server:
        trunk = _create(server.url, server.api_key())
        key_text = server.api_key(name="second")
        assert trunk["openai_api_key"] == "****1111"
        raw = _database_bytes(tmp_path)
    raw += _database_bytes(tmp_path)
    for value in (*SECRETS.values(), key_text):
        assert value.encode() not in raw, f"{value} stored in plaintext"
    assert b"PLAINTEXT-MARKER" not in raw and b"Plaintext-Marker" not in raw
    # The check can fail: the non-secret fields are there in plaintext.
    assert b"secret-holder" in raw and b"https://example.com/hook" in raw
    key_file = tmp_path / "t.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_rotate_secret_key_reseals_everything_and_secrets_still_work(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    url = f"sqlite://{db}"
    with live_server(url) as server:
        key = server.api_key()
        trunk = _create(server.url, key)
        before = json.loads((tmp_path / "t.key").read_text())["current"]
    done = telepath("rotate-secret-key", "--database", url)
    assert "Re-encrypted 1 trunk" in done.stdout
    ring = json.loads((tmp_path / "t.key").read_text())
    assert ring["current"] != before and ring["older"] == []
    with live_server(url) as server:
        got = requests.get(
            f"{server.url}/v1/trunks/{trunk['id']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert got.status_code == 200
        assert got.json()["openai_api_key"] == "****1111"
        assert got.json()["webhook_secret"] == "****2222"


def test_environment_master_key_rotation_prints_the_new_key(tmp_path: Path) -> None:
    import base64
    import secrets as pysecrets

    old = base64.b64encode(pysecrets.token_bytes(32)).decode()
    url = f"sqlite://{tmp_path / 't.db'}"
    env = {"TELEPATH_SECRET_KEY": old}
    with live_server(url, env=env) as server:
        key = server.api_key()
        trunk = _create(server.url, key)
    assert not (tmp_path / "t.key").exists()  # with TELEPATH_SECRET_KEY no key file is written
    done = telepath("rotate-secret-key", "--database", url, env=env)
    new = done.stdout.strip().splitlines()[-1]
    assert new != old and len(base64.b64decode(new)) == 32
    # The old key no longer opens the rows; the new one does.
    with live_server(url, env={"TELEPATH_SECRET_KEY": new}) as server:
        got = requests.get(
            f"{server.url}/v1/trunks/{trunk['id']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert got.json()["openai_api_key"] == "****1111"


def test_a_wrong_master_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "t.key").write_text('{"current": "bm90IGEga2V5"}')
    done = telepath("apikey", "list", "--database", f"sqlite://{tmp_path / 't.db'}", check=False)
    # apikey list does not open secrets; serve and rotation do, and must say why they stop.
    assert done.returncode == 0
    done = telepath("rotate-secret-key", "--database", f"sqlite://{tmp_path / 't.db'}", check=False)
    assert done.returncode == 2 and "key file" in done.stderr

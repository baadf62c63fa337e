"""The telepath command: keys, migrations, and errors a person can act on."""

from __future__ import annotations

from pathlib import Path

from tests.support.live_server import telepath


def test_apikey_create_list_revoke_and_migrate(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'cli.db'}"
    assert "up to date" in telepath("migrate", "--database", db).stdout
    created = telepath("apikey", "create", "--name", "ops", "--account", "acme", "--database", db)
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sk_live_") and len(key) >= len("sk_live_") + 43
    read_only = (
        telepath("apikey", "create", "--name", "ro", "--scopes", "read", "--database", db)
        .stdout.strip()
        .splitlines()[-1]
    )
    listing = telepath("apikey", "list", "--database", db).stdout
    assert key[:12] in listing and read_only[:12] in listing
    assert key not in listing  # only prefixes are ever shown again
    assert "acme" in listing and "read " in listing
    key_id = next(line.split()[0] for line in listing.splitlines() if key[:12] in line)
    assert f"Revoked {key_id}" in telepath("apikey", "revoke", key_id, "--database", db).stdout
    assert "revoked" in next(
        line
        for line in telepath("apikey", "list", "--database", db).stdout.splitlines()
        if key_id in line
    )


def test_environment_database_and_error_exit_codes(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'env.db'}"
    created = telepath("apikey", "create", "--name", "env", env={"TELEPATH_DATABASE_URL": db})
    assert created.stdout.strip().splitlines()[-1].startswith("sk_live_")
    assert (tmp_path / "env.db").exists()
    missing = telepath("apikey", "revoke", "key_nope", "--database", db, check=False)
    assert missing.returncode == 1 and "No API key" in missing.stderr
    bad = telepath("migrate", "--database", "mysql://x/y", check=False)
    assert (
        bad.returncode == 2
        and "use sqlite://PATH or postgres://" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    help_text = telepath("serve", "--help").stdout
    for flag in (
        "--http",
        "--sip",
        "--sip-tls",
        "--rtp-ports",
        "--public-address",
        "--sip-domain",
        "--public-url",
        "--database",
        "--redis",
        "--demo",
        "--require-https",
        "--event-loop",
    ):
        assert flag in help_text

"""``telepath serve --demo``: a demo account, API key and echo trunk, printed at start."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.services import Services
from gateway.services.trunks import TrunkState

DEMO_ACCOUNT = "demo"
DEMO_USERNAME = "demo"


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """What the demo prints: shown once, like every secret."""

    api_key: str
    trunk: TrunkState
    sip_password: str


async def ensure_demo(services: Services) -> DemoCredentials:
    """Create (or refresh) the demo account's key and echo trunk with a new password."""
    created = await services.api_keys.create(DEMO_ACCOUNT, "demo")
    account_id = created.key.account_id
    existing = await services.trunks.find_by_username(DEMO_USERNAME)
    if existing is not None and existing.trunk.account_id == account_id:
        if existing.trunk.status != "active":
            await services.trunks.set_active(account_id, existing.trunk.id, True)
        state = await services.trunks.rotate_password(account_id, existing.trunk.id)
    else:
        state = await services.trunks.create(
            account_id,
            {"name": "Demo echo agent", "ai_provider": "echo", "sip_username": DEMO_USERNAME},
        )
    password = state.sip_password
    if password is None:
        raise RuntimeError("demo trunk has no fresh password")
    return DemoCredentials(created.secret, state, password)


def describe(demo: DemoCredentials, settings_domain: str, http_url: str, sip: str) -> str:
    """The text printed at start-up."""
    username = demo.trunk.trunk.sip_username
    return "\n".join(
        [
            "Telepath demo",
            f"  API:           {http_url}/v1   (docs: {http_url}/docs)",
            f"  API key:       {demo.api_key}",
            f"  SIP URI:       sip:{username}@{settings_domain}   (SIP listener {sip})",
            f"  SIP username:  {username}",
            f"  SIP password:  {demo.sip_password}   (shown once)",
            "  Agent:         built-in echo (you hear yourself back)",
        ]
    )

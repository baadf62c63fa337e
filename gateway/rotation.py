"""``telepath rotate-secret-key``: re-encrypt every stored secret under a new master key.

With a key file the order keeps every row readable if the process dies at any point:
1. write the key file with the new key current and the old one kept for decryption;
2. re-seal every row under the new key (one transaction);
3. write the key file without the old key.
With ``TELEPATH_SECRET_KEY`` the new key is printed before anything is re-sealed.
"""

from __future__ import annotations

import base64

from tortoise.transactions import in_transaction

from gateway.secret_box import Keyring, decode_key, generate_key, load_keyring, write_key_file
from gateway.settings import Settings
from models import Trunk


async def reseal_all(ring: Keyring) -> int:
    """Re-seal every trunk's secrets under ``ring.current``; returns how many changed."""
    changed = 0
    async with in_transaction():
        for trunk in await Trunk.filter(secrets__not_isnull=True).select_for_update():
            if trunk.secrets and ring.needs_reseal(trunk.secrets):
                aad = f"trunk:{trunk.id}"
                trunk.secrets = ring.seal(ring.open(trunk.secrets, aad), aad)
                await trunk.save(update_fields=["secrets"])
                changed += 1
    return changed


async def rotate_secret_key(settings: Settings, new_key: str | None) -> str:
    """Rotate; returns what to tell the operator."""
    old = load_keyring(settings.secret_key, settings.key_file, create=settings.secret_key is None)
    new_text = new_key or generate_key()
    new = decode_key(new_text)
    ring = Keyring(new, (old.current, *old.older))
    if settings.secret_key:
        count = await reseal_all(ring)
        return (
            f"Re-encrypted {count} trunk(s). Set TELEPATH_SECRET_KEY to the new key before restarting:\n"
            f"{base64.b64encode(new).decode()}"
        )
    key_file = settings.key_file
    if key_file is None:  # load_keyring raised already; kept for the type checker
        raise RuntimeError("no key file")
    write_key_file(key_file, ring)
    count = await reseal_all(ring)
    write_key_file(key_file, Keyring(new))
    return f"Re-encrypted {count} trunk(s) under the new key in {key_file}."

"""``audioop`` (C sample operations: G.711, levels) without its deprecation warning.

``audioop`` is in the standard library up to Python 3.12, deprecated there ("slated for
removal in Python 3.13"), and comes from the ``audioop-lts`` distribution (same module
name) from 3.13 on; the project depends on it there (pyproject.toml). The warning is moot
for us, since the replacement is that very package, so it is silenced once, here.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["audioop"]

"""Packaging hook for the compiled build: ``TELEPATH_COMPILE=1`` compiles the frame-path
modules listed in gateway/native.py with mypyc (the rest of the metadata is in
pyproject.toml). Without it the package is pure Python and runs the same code
interpreted. ``scripts/compile.sh`` uses this to build them in place."""

from __future__ import annotations

import json
import os
import runpy

from setuptools import setup

ext_modules = []
record_path = ""
if os.environ.get("TELEPATH_COMPILE") == "1":
    from mypyc.build import mypycify

    native = runpy.run_path(os.path.join("gateway", "native.py"))
    sources = {module: module.replace(".", os.sep) + ".py" for module in native["COMPILED"]}
    ext_modules = mypycify(list(sources.values()), opt_level="3", group_name=native["GROUP"])
    # What was compiled, so that a changed source is noticed (gateway.native.stale).
    record = {module: native["source_digest"](path) for module, path in sources.items()}
    record_path = os.path.join("gateway", native["SOURCES_RECORD"])
    with open(record_path, "w") as out:
        json.dump(record, out, indent=1, sort_keys=True)

try:
    setup(ext_modules=ext_modules)
except BaseException:
    if record_path:  # nothing was built from these sources: do not vouch for them
        os.remove(record_path)
    raise

#!/usr/bin/env python3
"""An example voice agent for Telepath's ``telepath`` agent protocol: it echoes the caller.

It shows every part of docs/agent-protocol.md an agent needs: read ``start``, optionally
answer ``accept`` with another format, send ``media`` back, put a ``mark`` after each piece
of audio and watch the gateway echo it when played, ``clear`` on ``*``, ``hangup`` on ``#``,
and stop on ``stop``. It depends on nothing but the ``websockets`` package.

Run it, then point a trunk at it (provider ``custom``, endpoint ``ws://HOST:PORT/``)::

    python examples/echo_agent.py --host 127.0.0.1 --port 8765
    python examples/echo_agent.py --accept l16/16000     # ask for 16 kHz linear PCM

The caller hears themselves about one frame late.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("echo_agent")


def media_format(name: str) -> dict[str, object]:
    """``"l16/16000"`` → the protocol's ``media_format`` object."""
    encoding, _, rate = name.lower().partition("/")
    return {"encoding": f"audio/{encoding}", "sample_rate": int(rate or 8000), "channels": 1}


async def echo_call(ws: ServerConnection, accept: str | None = None) -> None:
    """Serve one call on ``ws``: the whole agent protocol, from ``start`` to ``stop``."""
    start = json.loads(await ws.recv())
    if start.get("type") != "start":
        await ws.close(1002, "expected start")
        return
    log.info(
        "call %s from %s to %s, X- headers %s, offered %s",
        start["call_id"],
        start["from"],
        start["to"],
        start["headers"],
        start["media_format"],
    )
    if accept:
        # Optional: choose another format for both directions (must answer promptly).
        await ws.send(json.dumps({"type": "accept", "media_format": media_format(accept)}))
    chunks = 0
    async for frame in ws:
        if isinstance(frame, bytes):  # binary_audio trunks: raw audio, send it straight back
            await ws.send(frame)
            continue
        message = json.loads(frame)
        kind = message.get("type")
        if kind == "media":
            chunks += 1
            await ws.send(json.dumps({"type": "media", "payload": message["payload"]}))
            await ws.send(json.dumps({"type": "mark", "name": f"echo-{chunks}"}))
        elif kind == "mark":
            log.debug("played up to %s", message["name"])
        elif kind == "dtmf":
            if message["digit"] == "#":
                await ws.send(json.dumps({"type": "hangup", "reason": "caller pressed #"}))
            elif message["digit"] == "*":
                await ws.send(json.dumps({"type": "clear"}))
        elif kind == "cleared":
            log.info("caller heard %d ms before the clear", message["played_ms"])
        elif kind == "stop":
            log.info("call over: %s", message.get("reason", ""))
            return


async def serve_echo(host: str, port: int, accept: str | None = None) -> Server:
    """Start the echo agent on ``host:port`` (``port=0`` picks a free port)."""

    async def handler(ws: ServerConnection) -> None:
        try:
            await echo_call(ws, accept)
        except ConnectionClosed:
            log.info("gateway went away")

    return await serve(handler, host, port, compression=None)


async def main() -> None:
    parser = argparse.ArgumentParser(description="Echo agent for the telepath agent protocol.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--accept", help="answer start with this format, e.g. l16/16000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = await serve_echo(args.host, args.port, args.accept)
    port = server.sockets[0].getsockname()[1]
    log.info("echo agent listening on ws://%s:%d/", args.host, port)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

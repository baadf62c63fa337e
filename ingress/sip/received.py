"""Where a request really came from: ``received`` and ``rport`` (RFC 3261 §18.2.1, RFC 3581).

Pure: :func:`stamp_received` returns the request with its top Via stamped, as the server
transport must before anything else looks at it.
"""

from __future__ import annotations

from .errors import SipParseError
from .headers import HeaderField, Headers, Via, split_list
from .message import Peer, Request

__all__ = ["stamp_received"]


def stamp_received(request: Request, source: Peer) -> Request:
    """Add ``received``/``rport`` to the top Via as the server transport must.

    RFC 3261 §18.2.1: ``received`` when the sent-by host is not the source address;
    RFC 3581 §4: with a valueless ``rport``, ``rport=<source port>`` and ``received``
    always. Responses copy the stamped Via, so the caller learns its public address, and
    they go back to the source (``transaction.response_peer``). A Via the parser let
    through but that does not parse strictly is left as it was.
    """
    fields = request.headers.fields
    for index, header in enumerate(fields):
        if header.canonical.lower() != "via":
            continue
        values = split_list(header.value)
        try:
            via = Via.parse(values[0])
        except SipParseError:
            return request
        if via.param("rport") is not None:
            stamped = via.with_param("received", source.host).with_param("rport", str(source.port))
        elif via.host.strip("[]").lower() != source.host.lower():
            stamped = via.with_param("received", source.host)
        else:
            return request
        values[0] = str(stamped)
        new = HeaderField(header.name, ", ".join(values))
        return request.with_headers(Headers((*fields[:index], new, *fields[index + 1 :])))
    return request

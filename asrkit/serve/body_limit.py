"""An ASGI middleware that holds the server's upload limit on the bytes received.

A ``Content-Length`` header can be left out (``Transfer-Encoding: chunked``) or be
wrong, so checking it alone let an endless chunked upload reach the multipart parser,
which spools large files to disk. Here the body is read by this middleware, counted as
it arrives, and kept in memory; the moment the count passes the limit the request is
answered with 413 and nothing more is read. Only a body within the limit is handed to
the app, so nothing over the limit is ever written anywhere.

Reading is asynchronous: a client that sends slowly holds only its own request.
"""

from __future__ import annotations

import json

Scope = dict
Message = dict


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with ``413 {"error": message}``."""

    def __init__(self, app, limit: int, message: str):
        self.app, self.limit = app, limit
        self.refusal = json.dumps({"error": message}).encode()

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(send)  # refused before a single byte of the body is read
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: there is no one to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send) -> None:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(self.refusal)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": self.refusal})


def _replay(body: bytes, receive):
    """A ``receive`` that gives the body already read, then waits on the client (for a
    disconnect) as the original would."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

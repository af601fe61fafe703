"""`asrkit serve`: a local web page to search an indexed archive by voice and listen."""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import user_errors
from .common import PORT, UPLOAD_MB  # parse-time range checks


def serve(
    index: Annotated[Path, typer.Argument(help="Index folder (from `asrkit index build`).")],
    model: Annotated[Optional[str], typer.Option(
        help="Recognition model (folder, .pt file or bundled name such as 'an4'): "
             "shows what is said around each hit.")] = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on. The default answers this machine only; any other "
             "lets whoever reaches it listen to the indexed recordings.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(callback=PORT, help="Port to listen on.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(
        callback=UPLOAD_MB, help="Largest query or transcription upload accepted, in MB.")] = 20.0,
):
    """Serve a page to search INDEX by voice: record, upload or pick a query, see and
    play the hits, and (with --model) read their transcripts."""
    with user_errors():
        try:
            import uvicorn

            from asrkit.serve.app import create_app
        except ImportError as e:
            from asrkit.errors import ConfigError
            raise ConfigError(f"`asrkit serve` needs {e.name}; install it with "
                              "pip install 'asrkit[serve]'") from None
        if not _is_loopback(host):
            typer.echo(f"warning: listening on {host}: anyone who can reach it can search "
                       "and play the indexed recordings", err=True)
        # On loopback, answer only requests addressed to it (a rebound DNS name is not).
        hosts = ["127.0.0.1", "localhost", "::1", host] if _is_loopback(host) else None
        app = create_app(index, model=model, max_upload_mb=max_upload_mb, allowed_hosts=hosts)
        # Bind before printing the URL, and hand uvicorn that very socket: a port in use
        # is then one error line, not a URL followed by a failure.
        sock = listen(host, port)
        typer.echo(f"asrkit search: http://{_url_host(host)}:{port}/  (Ctrl-C stops it)",
                   err=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        server.run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; AsrkitError (exit 1) if it cannot bind."""
    from asrkit.errors import AsrkitError
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise AsrkitError(f"--host {host}: cannot listen there ({e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        reason = ("already in use; stop the other server or choose another --port"
                  if e.errno == errno.EADDRINUSE else str(e.strerror or e))
        raise AsrkitError(f"{_url_host(host)}:{port}: cannot listen: {reason}") from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

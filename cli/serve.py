"""`asrkit serve`: a local web page to search an indexed archive by voice and listen."""

from __future__ import annotations

import ipaddress
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
        typer.echo(f"asrkit search: http://{_url_host(host)}:{port}/  (Ctrl-C stops it)",
                   err=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

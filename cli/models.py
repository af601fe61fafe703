"""`asrkit models`: the bundled models and what they were trained on."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import user_errors


def models(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False):
    """List bundled models with training data, vocabulary and test WER."""
    with user_errors():
        from asrkit.pretrained import list_models

        rows = list_models()
        if as_json:
            typer.echo(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
            return
        if not rows:
            typer.echo("no bundled models")
        for r in rows:
            wer = f", test WER {100 * r.test_wer:.2f}%" if r.test_wer is not None else ""
            live = " (forward-only: transcribe --stream)" if r.streams else ""
            typer.echo(f"{r.name}: {r.trained_on or '?'}{wer}{live}")
            typer.echo(f"    {r.path} ({r.size_mb} MB), vocabulary {r.vocabulary!r}")

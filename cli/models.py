"""`asrkit models`: the bundled models and what they were trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import user_errors


def models(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False):
    """List bundled models with training data, vocabulary and test WER."""
    with user_errors():
        from asrkit.asr.checkpoint import load_record
        from asrkit.errors import ModelFileError

        rows = []
        for path in sorted((Path(__import__("asrkit").__file__).parent / "pretrained").glob("*.pt")):
            try:
                rec = load_record(path)
            except ModelFileError:  # e.g. the search embedder, which lives alongside
                continue
            info = rec.get("info", {})
            rows.append({"name": path.stem, "path": str(path),
                         "size_mb": round(path.stat().st_size / 1e6, 2),
                         "vocabulary": "".join(rec["vocabulary"]["symbols"]),
                         **{k: info[k] for k in ("trained_on", "train_hours", "test_wer",
                                                 "test_cer") if k in info}})
        if as_json:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        if not rows:
            typer.echo("no bundled models")
        for r in rows:
            typer.echo(f"{r['name']}: {r.get('trained_on', '?')}, "
                       f"test WER {100 * r['test_wer']:.2f}%" if "test_wer" in r else
                       f"{r['name']}: {r.get('trained_on', '?')}")
            typer.echo(f"    {r['path']} ({r['size_mb']} MB), vocabulary {r['vocabulary']!r}")

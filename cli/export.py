"""`asrkit export`: a model as TorchScript or ONNX for use without asrkit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import user_errors


def export(
    model: Annotated[str, typer.Argument(help="Model file, training folder or bundled name (e.g. an4).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="torchscript or onnx.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write; its description goes to FILE.json beside it.")],
    check: Annotated[bool, typer.Option(help="Run the exported file on a test batch and compare with the model.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="A forward-only model's streaming graph: called on a window of audio, it takes and returns the recurrent state (see the sidecar).")] = False,
):
    """Export MODEL (waveform → CTC log-probabilities, front end included)."""
    with user_errors():
        from asrkit.asr.checkpoint import load_model
        from asrkit.errors import ConfigError
        from asrkit.asr.export import FORMATS, check_export, export_model

        if fmt not in FORMATS:  # before loading anything
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        asr = load_model(model)
        if stream:
            from asrkit.asr.export_stream import check_stream_export, export_stream
            from asrkit.asr.streaming import check_streamable
            check_streamable(asr, model)
            sidecar = export_stream(asr, out, fmt)
            diff = check_stream_export(asr, out, fmt) if check else None
        else:
            sidecar = export_model(asr, out, fmt)
            diff = check_export(asr, out, fmt) if check else None
        result = {"model": model, "format": fmt, "file": str(out), "sidecar": str(sidecar),
                  "size_mb": round(out.stat().st_size / 1e6, 2), "max_abs_diff": diff}
        if diff is not None and diff > 1e-3:
            raise ConfigError(f"{out}: the exported model disagrees with {model} (largest "
                              f"log-probability difference {diff:.3g}); please report this")
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        checked = ("not checked" if not check else "not checked: install onnxruntime"
                   if diff is None else f"checked: max |Δ log-prob| {diff:.1e}")
        typer.echo(f"wrote {out} ({result['size_mb']} MB, {fmt}) and {sidecar}; {checked}")

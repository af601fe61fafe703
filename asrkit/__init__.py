"""asrkit: CTC speech recognition and query-by-example audio search.

The public Python API mirrors the command line::

    import asrkit
    model = asrkit.load_model("exp/an4/best.pt")
    for result in asrkit.transcribe(model, ["a.wav", "b.wav"]):
        print(result.text)
"""

__version__ = "0.1.0"

from .errors import AsrkitError  # noqa: E402

_LAZY = {
    "load_model": "checkpoint",
    "save_model": "checkpoint",
    "transcribe": "transcription",
    "train": "training",
    "evaluate": "evaluation",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "Utterance": "manifest",
    "load_audio": "audio",
    "build_index": "index",
    "search": "search",
}


def __getattr__(name):
    # Heavy modules (torch, faiss) load on first use, so `asrkit --help` stays fast.
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        # Importing asrkit.search binds the submodule as an attribute; pin the function.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'asrkit' has no attribute {name!r}")


__all__ = ["AsrkitError", "__version__", *_LAZY]

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
    "load_model": "asr.checkpoint",
    "save_model": "asr.checkpoint",
    "transcribe": "asr.transcription",
    "StreamingTranscriber": "asr.streaming",
    "train": "asr.training",
    "evaluate": "asr.evaluation",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "Utterance": "manifest",
    "load_audio": "audio",
    "build_index": "search.index",
    "search_index": "search.query",
}

_SUBPACKAGES = ("asr", "decoding", "lm", "search", "serve", "corpora", "synth")


def __getattr__(name):
    # Heavy modules (torch, faiss) load on first use, so `asrkit --help` stays fast.
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, "search" if name == "search_index" else name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'asrkit' has no attribute {name!r}")


__all__ = ["AsrkitError", "__version__", *_LAZY]

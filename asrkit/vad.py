"""Speech probabilities from Silero VAD, a small neural voice-activity detector.

The ``silero-vad`` package ships its model weights (a TorchScript file) inside the
package, so it runs offline on the CPU with the torch asrkit already has. It scores
each :data:`SILERO_WINDOW` samples (32 ms at 16 kHz) with the probability that they
hold speech, carrying a recurrent state from window to window.

Importing ``silero_vad`` sets torch to one thread for the whole process; the model is
loaded here with the caller's thread count put back afterwards.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .errors import ConfigError

SILERO_WINDOW = 512  # samples per probability at 16 kHz (the model's fixed input)
SILERO_HOP_SECONDS = SILERO_WINDOW / SAMPLE_RATE  # 0.032 s
WINDOWS_PER_CALL = 2048  # windows scored per audio_forward call (about a minute)

_model = None
_lock = threading.Lock()


def silero_available() -> bool:
    try:
        import silero_vad  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _load():
    global _model
    with _lock:
        if _model is None:
            threads = torch.get_num_threads()
            try:
                from silero_vad import load_silero_vad  # noqa: PLC0415
            except ImportError:
                raise ConfigError("the silero speech detector needs the silero-vad package; "
                                  "pip install silero-vad, or use the energy "
                                  "detector") from None
            finally:
                torch.set_num_threads(threads)
            _model = load_silero_vad()
            torch.set_num_threads(threads)
        return _model


def speech_probabilities(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``wave (samples,)`` at 16 kHz → ``(windows,)`` speech probabilities, window ``i``
    covering samples ``[i, i + 1) * SILERO_WINDOW`` (the last one zero-padded)."""
    if sample_rate != SAMPLE_RATE:
        raise ConfigError(f"the silero speech detector takes {SAMPLE_RATE} Hz audio, "
                          f"not {sample_rate} Hz")
    if len(wave) == 0:
        return np.zeros(0, np.float32)
    model = _load()
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    pad = (-len(x)) % SILERO_WINDOW
    x = torch.nn.functional.pad(x, (0, pad)).reshape(-1, SILERO_WINDOW)
    out = []
    with _lock, torch.inference_mode():  # the model holds its recurrent state
        model.reset_states()
        for row in x:
            out.append(float(model(row, SAMPLE_RATE)))
    return np.asarray(out, dtype=np.float32)

"""Real-time factor of `asrkit transcribe` on a batch of files.

Writes N files of noise-like audio, runs the whole transcription path (reading,
features, model, greedy decoding) and, as the reference in the same run, the model
alone on the same audio already in memory. The ratio shows the pipeline's overhead.

    python bench/transcribe_rtf.py [--files 40] [--seconds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asrkit.asr.model import AsrModel
from asrkit.text import Vocabulary
from asrkit.asr.transcription import transcribe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    torch.manual_seed(0)
    model = AsrModel(Vocabulary(tuple(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"))).eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        waves = []
        for i in range(args.files):
            n = int(16_000 * args.seconds * rng.uniform(0.5, 1.5))
            wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
            sf.write(Path(tmp) / f"f{i:04d}.wav", wave, 16_000, subtype="PCM_16")
            waves.append(torch.from_numpy(wave))
        audio = sum(len(w) for w in waves) / 16_000
        t = time.perf_counter()
        n = sum(1 for _ in transcribe(model, [tmp]))
        pipeline = time.perf_counter() - t
    t = time.perf_counter()
    with torch.inference_mode():
        for w in sorted(waves, key=len):
            model(w.unsqueeze(0))
    reference = time.perf_counter() - t
    print(f"{n} files, {audio:.0f} s of audio, {torch.get_num_threads()} threads")
    print(f"asrkit transcribe: {pipeline:.2f} s, real-time factor {pipeline / audio:.4f} "
          f"({audio / pipeline:.0f}x faster than real time)")
    print(f"model alone, one file at a time: {reference:.2f} s, RTF {reference / audio:.4f}; "
          f"ratio transcribe/model-alone {pipeline / reference:.2f}")


if __name__ == "__main__":
    main()

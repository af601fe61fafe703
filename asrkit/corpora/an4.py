"""CMU AN4 ("census"): spelled letters, digits and commands; 16 kHz close-talking.

Layout (the WAV edition): ``etc/an4_{train,test}.{transcription,fileids}`` and
``wav/an4_clstk/<spk>/<utt>.wav``, ``wav/an4test_clstk/<spk>/<utt>.wav``.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

from ..errors import AsrkitError, ConfigError, ManifestError, where
from ..manifest import Utterance, read_lines, write_manifest

REPOSITORY = "https://github.com/cmusphinx/an4"
COMMIT = "b567d13"  # the revision whose layout and results this recipe documents
_LINE = re.compile(r"^(?:<s>\s*)?(?P<text>.*?)(?:\s*</s>)?\s*\((?P<id>[^()]+)\)\s*$")


def download_an4(target: str | Path) -> Path:
    """Clone the public AN4 WAV repository into ``target`` (needs git and internet);
    a no-op if ``target`` already holds the corpus."""
    target = Path(target)
    if (target / "etc" / "an4_train.transcription").exists():
        return target
    try:
        subprocess.run(["git", "clone", "--quiet", REPOSITORY, str(target)], check=True)
        subprocess.run(["git", "-C", str(target), "checkout", "--quiet", COMMIT], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise AsrkitError(f"could not download AN4 from {REPOSITORY} ({e}); download it by "
                          "hand and pass its folder with --data-dir") from None
    return target


def prepare_an4(corpus: str | Path, out_dir: str | Path, valid_speakers: int = 6,
                seed: int = 0) -> dict[str, Path]:
    """Write ``train``, ``valid`` and ``test`` manifests for AN4 into ``out_dir``.

    ``valid`` holds out ``valid_speakers`` whole training speakers (chosen with
    ``seed``) for early stopping and tuning; ``test`` is the official test set.
    """
    corpus, out = Path(corpus), Path(out_dir)
    train = read_an4_split(corpus, "train")
    test = read_an4_split(corpus, "test")
    speakers = sorted({u.speaker for u in train})
    if not 0 <= valid_speakers < len(speakers):
        raise ConfigError(f"valid_speakers must be between 0 and {len(speakers) - 1} "
                          f"(AN4 training has {len(speakers)} speakers), not {valid_speakers}")
    held = set(random.Random(seed).sample(speakers, valid_speakers))
    splits = {"train": [u for u in train if u.speaker not in held],
              "valid": [u for u in train if u.speaker in held], "test": test}
    return {name: _write(out / f"{name}.jsonl", utts) for name, utts in splits.items()}


def read_an4_split(corpus: Path, split: str) -> list[Utterance]:
    etc = corpus / "etc"
    trans, fileids = etc / f"an4_{split}.transcription", etc / f"an4_{split}.fileids"
    for f in (trans, fileids):
        if not f.exists():
            raise ManifestError(f"{f}: missing; is {corpus} an AN4 corpus folder "
                                "(with etc/ and wav/)?")
    paths = {Path(p).name: p for _, line in read_lines(fileids) for p in line.split()}
    utts = []
    for lineno, line in read_lines(trans):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        if not m or m["id"] not in paths:
            raise ManifestError(f"{where(trans, lineno)}: expected 'WORDS (utterance-id)' "
                                "with an id listed in the fileids file")
        rel = paths[m["id"]]
        audio = corpus / "wav" / f"{rel}.wav"
        speaker = Path(rel).parent.name
        utts.append(Utterance(m["id"], str(audio), " ".join(m["text"].split()),
                              speaker=speaker))
    return utts


def _write(path: Path, utts: list[Utterance]) -> Path:
    write_manifest(path, utts)
    return path

"""speechocean762 (openslr.org/101, CC BY 4.0): 5,000 read English sentences by 250
Mandarin-speaking learners, about half of them children; 16 kHz, about 5.6 hours.

Layout (Kaldi style): ``train/`` and ``test/`` (125 speakers each, none shared), each
with ``text`` (``<utt> WORDS``, upper case), ``wav.scp`` (``<utt> <path>``), ``utt2spk``,
``spk2age``, ``spk2gender``. In the original archive ``wav.scp`` paths are relative to
the corpus folder (``WAVE/SPEAKER0001/000010011.WAV``); copies that re-encode the audio
may make them relative to the split folder (``../audio/...``): both are accepted.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from ..errors import AsrkitError, ConfigError, ManifestError, where
from ..io import read_text_lines
from ..manifest import Utterance, write_manifest
from .librispeech import Progress, fetch, md5sum, safe_extract

URL = "https://www.openslr.org/resources/101"
ARCHIVE = "speechocean762.tar.gz"
# OpenSLR 101 publishes no checksum beside the archive. Until one is pinned here, the
# first download records its MD5 in ``<target>/speechocean762.tar.gz.md5`` and every
# later use of an archive in that folder must match it (trust on first use); pass
# ``md5=`` (``--md5``) to check against a digest obtained elsewhere.
ARCHIVE_MD5: str | None = None
SPLITS = ("train", "test")


def download_speechocean762(target: str | Path, base_url: str = URL, md5: str | None = None,
                            progress: Progress | None = None) -> Path:
    """Fetch, verify and unpack the corpus into ``target/speechocean762``; returns that
    folder. A no-op when it is already there; an archive already in ``target`` (fetched
    by hand) is verified and used instead of downloading."""
    target = Path(target)
    corpus = target / "speechocean762"
    if all((corpus / s / "text").is_file() for s in SPLITS):
        return corpus
    archive, receipt = target / ARCHIVE, target / f"{ARCHIVE}.md5"
    expected = md5 or ARCHIVE_MD5 or (receipt.read_text().split()[0]
                                      if receipt.is_file() else None)
    fetched = not archive.exists()
    if fetched:
        partial = target / f"{ARCHIVE}.partial"
        fetch(f"{base_url.rstrip('/')}/{ARCHIVE}", partial, progress)
        got = md5sum(partial, progress)
        if expected and got != expected:
            partial.unlink()
            raise AsrkitError(f"{base_url}/{ARCHIVE}: the download's MD5 is {got}, not "
                              f"{expected}; it was deleted. Run again or try another mirror")
        os.replace(partial, archive)
    else:
        got = md5sum(archive, progress)
        if expected and got != expected:
            raise AsrkitError(f"{archive}: MD5 {got} differs from {expected} (an incomplete "
                              "or damaged download); delete it and run again")
    if not receipt.is_file():
        receipt.write_text(f"{got}  {ARCHIVE}\n")
    _extract(archive, corpus, progress)
    if fetched:
        archive.unlink()
    return corpus


def prepare_speechocean762(corpus: str | Path, out_dir: str | Path, valid_speakers: int = 10,
                           seed: int = 0) -> dict[str, Path]:
    """Write ``train``, ``valid`` and ``test`` manifests into ``out_dir``.

    ``valid`` holds out ``valid_speakers`` whole training speakers (chosen with ``seed``)
    for early stopping; ``test`` is the official test split. ``corpus`` is the folder
    holding ``train/`` and ``test/`` (or the folder holding ``speechocean762/``).
    Re-running rewrites identical files.
    """
    root = _corpus_root(Path(corpus).absolute())
    train, test = (read_speechocean762_split(root, s) for s in SPLITS)
    speakers = sorted({u.speaker for u in train})
    if not 0 <= valid_speakers < len(speakers):
        raise ConfigError(f"valid_speakers must be between 0 and {len(speakers) - 1} "
                          f"(its training split has {len(speakers)} speakers), "
                          f"not {valid_speakers}")
    held = set(random.Random(seed).sample(speakers, valid_speakers))
    splits = {"train": [u for u in train if u.speaker not in held],
              "valid": [u for u in train if u.speaker in held], "test": test}
    out = Path(out_dir)
    for name, utts in splits.items():
        write_manifest(out / f"{name}.jsonl", utts)
    return {name: out / f"{name}.jsonl" for name in splits}


def read_speechocean762_split(root: Path, split: str) -> list[Utterance]:
    """The utterances of ``root/split`` with text, speaker and checked audio path."""
    folder = root / split
    for name in ("text", "wav.scp", "utt2spk"):
        if not (folder / name).is_file():
            raise ManifestError(f"{folder / name}: missing; is {root} the speechocean762 "
                                "folder (with train/ and test/)?")
    texts = _table(folder / "text")
    speakers = _table(folder / "utt2spk")
    utts = []
    for uid, rel in _table(folder / "wav.scp").items():
        audio = _resolve(rel, folder, root)
        if audio is None:
            raise ManifestError(f"{folder / 'wav.scp'}: audio of {uid} ({rel}) is missing; "
                                "extract the archive again")
        if uid not in texts:
            raise ManifestError(f"{folder / 'text'}: no transcript for {uid}")
        utts.append(Utterance(uid, str(audio), " ".join(texts[uid].split()),
                              speaker=speakers.get(uid)))
    return sorted(utts, key=lambda u: u.id)


def _table(path: Path) -> dict[str, str]:
    """``<key> <value...>`` lines (space or tab separated) → dict."""
    out = {}
    for lineno, line in read_text_lines(path, ManifestError):  # bad UTF-8 named by line
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ") if "\t" not in line else \
            line.strip().partition("\t")
        if not value.strip():
            raise ManifestError(f"{where(path, lineno)}: expected '<utterance-id> <value>'")
        out[key] = value.strip()
    return out


def _resolve(rel: str, split_dir: Path, root: Path) -> Path | None:
    for base in (split_dir, root):
        path = (base / rel).resolve()
        if path.is_file():
            return path
    return None


def _corpus_root(corpus: Path) -> Path:
    for candidate in (corpus, corpus / "speechocean762"):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise ManifestError(f"{corpus}: no train/ and test/ folders; pass the speechocean762 "
                        "folder (or add --download to fetch it there)")


def _extract(archive: Path, corpus: Path, progress: Progress | None) -> None:
    """Unpack into a scratch folder and move the corpus into place in one rename, so an
    interrupted extraction is never taken for a finished one."""
    scratch = corpus.parent / ".speechocean762.extracting"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        safe_extract(archive, scratch, progress)
        found = [p.parent.parent for p in scratch.rglob("train/wav.scp")]
        if not found:
            raise AsrkitError(f"{archive}: holds no train/wav.scp; is it the archive from "
                              "openslr.org/101?")
        if corpus.exists():
            shutil.rmtree(corpus)
        os.replace(found[0], corpus)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

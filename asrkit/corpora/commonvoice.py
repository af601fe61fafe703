"""Mozilla Common Voice: crowd-sourced read sentences in over 100 languages, MP3 clips.

Layout of an extracted release: ``cv-corpus-<version>-<date>/<lang>/`` holding
``{train,dev,test,validated,other,invalidated}.tsv`` and ``clips/<name>.mp3``. The TSVs
are tab-separated with a header line and no quoting; the columns (``client_id``,
``path``, ``sentence``, ``up_votes``, ``age``, ``locale``...) vary between releases, so
they are found by name. Reading MP3 needs libsndfile 1.1 or newer (soundfile 0.12+).
"""

from __future__ import annotations

import csv
import logging
import unicodedata
from pathlib import Path
from typing import Sequence

from ..errors import AsrkitError, ConfigError, ManifestError, where
from ..manifest import Utterance, read_lines, write_manifest

DOWNLOAD_PAGE = "https://commonvoice.mozilla.org/datasets"
SPLITS = ("train", "dev", "test", "validated", "other", "invalidated")
DEFAULT_SPLITS = ("train", "dev", "test")
# keep: sentences as written. upper: upper case, punctuation removed except apostrophes,
# the form of LibriSpeech transcripts, for character models.
NORMALIZATIONS = ("keep", "upper")
_COLUMNS = ("client_id", "path", "sentence")
# Typographic apostrophes, so "don’t" and "don't" are one word.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'",
                              "\u00b4": "'"})

log = logging.getLogger("asrkit")


def download_commonvoice(target: str | Path, language: str | None = None) -> Path:
    """Return ``target``'s language folder if a release is already there; otherwise
    raise: Common Voice can only be downloaded after accepting its terms on the site."""
    try:
        return find_language_dir(Path(target), language)
    except (ManifestError, ConfigError):
        pass
    raise AsrkitError(
        f"Common Voice has no open download: fetch the {language or '<language>'} archive "
        f"from {DOWNLOAD_PAGE} (the site asks for an e-mail address and acceptance of "
        f"its terms), extract it, and pass the extracted folder with --data-dir")


def prepare_commonvoice(corpus_dir: str | Path, out_dir: str | Path,
                        splits: Sequence[str] = DEFAULT_SPLITS, language: str | None = None,
                        normalize: str = "keep") -> dict[str, Path]:
    """Write one manifest ``<out_dir>/<split>.jsonl`` per split (speaker = client_id).

    ``corpus_dir`` is a language folder (holding ``train.tsv`` and ``clips/``) or a
    release folder holding language folders, one picked by ``language``. ``normalize``
    is one of :data:`NORMALIZATIONS`. Re-running rewrites identical files.
    """
    if normalize not in NORMALIZATIONS:
        raise ConfigError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, "
                          f"not {normalize!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(f"unknown Common Voice split(s) {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(SPLITS)}")
    if not splits:
        raise ConfigError(f"choose at least one Common Voice split: {', '.join(SPLITS)}")
    # Absolute, so the manifests' audio paths do not depend on the working directory.
    lang_dir = find_language_dir(Path(corpus_dir).absolute(), language)
    out = Path(out_dir)
    paths = {}
    for split in dict.fromkeys(splits):
        path = out / f"{split}.jsonl"
        write_manifest(path, read_commonvoice_split(lang_dir, split, normalize))
        paths[split] = path
    return paths


def find_language_dir(corpus: Path, language: str | None = None) -> Path:
    """The folder holding the TSVs: ``corpus`` itself, ``corpus/<language>``, or the
    only language folder in ``corpus``."""
    if _is_language_dir(corpus):
        return corpus
    if language is not None:
        if _is_language_dir(corpus / language):
            return corpus / language
        raise ManifestError(f"{corpus / language}: no Common Voice TSV files there; pass "
                            "an extracted release folder and a language it holds")
    found = sorted(d for d in corpus.iterdir() if _is_language_dir(d)) if corpus.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        raise ConfigError(f"{corpus}: holds several languages "
                          f"({', '.join(d.name for d in found)}); choose one with --language")
    raise ManifestError(f"{corpus}: no Common Voice TSV files ({', '.join(DEFAULT_SPLITS)}"
                        ".tsv) in it or its sub-folders; pass the folder of an extracted "
                        f"release (download it from {DOWNLOAD_PAGE})")


def read_commonvoice_split(lang_dir: Path, split: str, normalize: str = "keep",
                           ) -> list[Utterance]:
    """The utterances of ``<split>.tsv``, in file order; each clip must exist."""
    tsv, clips = lang_dir / f"{split}.tsv", lang_dir / "clips"
    if not tsv.is_file():
        raise ManifestError(f"{tsv}: missing; this release has no {split!r} split")
    utts, seen, empty = [], set(), 0
    # read_lines: a BOM, CRLF, bad UTF-8 and NUL bytes are handled or named by line
    rows = csv.reader((line for _, line in read_lines(tsv)), delimiter="\t",
                      quoting=csv.QUOTE_NONE)
    header = _read_header(_checked(rows, tsv), tsv)
    col = {name: header.index(name) for name in _COLUMNS}
    for row in _checked(rows, tsv):
        if not row:
            continue
        loc = where(tsv, rows.line_num)
        if len(row) != len(header):
            raise ManifestError(f"{loc}: {len(row)} tab-separated fields where the "
                                f"header has {len(header)}")
        name = row[col["path"]]
        audio = clips / (name if Path(name).suffix else f"{name}.mp3")
        uid = Path(name).stem
        if not name or uid in seen:
            raise ManifestError(f"{loc}: {'duplicate' if name else 'empty'} clip path "
                                f"{name!r}")
        if not audio.is_file():
            raise ManifestError(f"{loc}: clip {audio} is missing; extract the "
                                "release again")
        seen.add(uid)
        text = normalize_sentence(row[col["sentence"]], normalize)
        if not text:
            empty += 1
            continue
        utts.append(Utterance(uid, str(audio), text, speaker=row[col["client_id"]]))
    if empty:
        log.warning("%s: left out %d clip(s) whose sentence has no words%s", tsv, empty,
                    " after normalisation" if normalize != "keep" else "")
    return utts


def _checked(rows, tsv: Path):
    """``rows``, with the csv module's own errors (a lone carriage return inside a line)
    named by file and line."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:
            raise ManifestError(f"{where(tsv, rows.line_num)}: {e}; is this a Common Voice "
                                "tab-separated file?") from None
        yield row


def normalize_sentence(text: str, normalize: str = "keep") -> str:
    """Unicode NFC and single spaces; with ``upper`` also upper case, and punctuation
    and symbols replaced by spaces except apostrophes (so "well-known" is two words)."""
    text = unicodedata.normalize("NFC", text)
    if normalize == "upper":
        text = "".join(" " if _is_punctuation(c) else c
                       for c in text.translate(_APOSTROPHES).upper())
        return " ".join(w for w in text.split() if w.strip("'"))  # drop lone quote marks
    return " ".join(text.split())


def _is_punctuation(char: str) -> bool:
    return char != "'" and unicodedata.category(char)[0] in "PS"


def _is_language_dir(folder: Path) -> bool:
    return any((folder / f"{split}.tsv").is_file() for split in SPLITS)


def _read_header(rows, tsv: Path) -> list[str]:
    header = next(rows, None)
    missing = [c for c in _COLUMNS if header is None or c not in header]
    if missing:
        raise ManifestError(f"{where(tsv, 1)}: the header lacks column(s) "
                            f"{', '.join(missing)}; is this a Common Voice TSV file?")
    return header

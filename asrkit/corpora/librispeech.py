"""LibriSpeech (openslr.org/12): read English audiobooks, 16 kHz FLAC, about 1000 hours.

Layout once extracted: ``LibriSpeech/<part>/<speaker>/<chapter>/`` holding
``<speaker>-<chapter>.trans.txt`` (lines ``<speaker>-<chapter>-<utt> WORDS``, upper case)
and one ``<speaker>-<chapter>-<utt>.flac`` per line. Each part is one ``<part>.tar.gz``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from ..errors import AsrkitError, ConfigError, ManifestError, where
from ..manifest import Utterance, read_lines, write_manifest

URL = "https://www.openslr.org/resources/12"
# The MD5 sums openslr publishes beside the archives (resources/12/md5sum.txt).
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
PARTS = tuple(MD5)
# The common "100 hours" setup: the clean training part plus all development and test sets.
DEFAULT_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100")
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60
# Python's own guard against unsafe members where it has one (3.10.12+, 3.11.4+); the
# explicit member check below is the first line of defence on every version.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands, for a progress callback."""

    archive: str  # file name, e.g. "dev-clean.tar.gz"
    stage: str  # "download" and "verify" count bytes; "extract" counts archive members
    done: int
    total: int | None  # None when unknown (no Content-Length; members of a stream)


Progress = Callable[[DownloadProgress], None]


def download_librispeech(target: str | Path, parts: Sequence[str] = DEFAULT_PARTS,
                         base_url: str = URL, progress: Progress | None = None) -> Path:
    """Fetch, verify (MD5) and unpack each part into ``target/LibriSpeech/<part>``.

    Parts already unpacked are skipped, so re-running is a no-op. An archive already in
    ``target`` (e.g. fetched by hand) is verified and used instead of downloading; an
    interrupted download continues where the server supports it. Archives fetched here
    are deleted once unpacked. ``base_url`` picks a mirror.
    """
    target = Path(target)
    for part in check_parts(parts):
        if (target / "LibriSpeech" / part).is_dir():
            continue
        archive = target / f"{part}.tar.gz"
        fetched = not archive.exists()
        if fetched:
            _fetch_verified(f"{base_url.rstrip('/')}/{archive.name}", archive, MD5[part],
                            progress)
        elif md5sum(archive, progress) != MD5[part]:
            raise AsrkitError(f"{archive}: MD5 differs from the published {MD5[part]} "
                              "(an incomplete or damaged download); delete it and run again")
        extract_part(archive, target, part, progress)
        if fetched:
            archive.unlink()
    return target


def prepare_librispeech(corpus_dir: str | Path, out_dir: str | Path,
                        parts: Sequence[str] = DEFAULT_PARTS) -> dict[str, Path]:
    """Write one manifest ``<out_dir>/<part>.jsonl`` per part (id, audio, text, speaker).

    ``corpus_dir`` holds ``LibriSpeech/`` (as :func:`download_librispeech` leaves it) or
    is that folder itself. Re-running rewrites identical files.
    """
    # Absolute, so the manifests' audio paths do not depend on the working directory.
    root = _corpus_root(Path(corpus_dir).absolute())
    out = Path(out_dir)
    paths = {}
    for part in check_parts(parts):
        path = out / f"{part}.jsonl"
        write_manifest(path, read_librispeech_part(root / part))
        paths[part] = path
    return paths


def read_librispeech_part(part_dir: Path) -> list[Utterance]:
    """Every utterance of one part folder, ordered by speaker, chapter, then line."""
    if not part_dir.is_dir():
        raise ManifestError(f"{part_dir}: missing; extract {part_dir.name}.tar.gz there, "
                            "or prepare with --download")
    utts = []
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        utts += _read_chapter(trans)
    if not utts:
        raise ManifestError(f"{part_dir}: no <speaker>/<chapter>/*.trans.txt transcripts; "
                            "is this a LibriSpeech part folder?")
    return utts


def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    unknown = [p for p in parts if p not in MD5]
    if unknown:
        raise ConfigError(f"unknown LibriSpeech part(s) {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(PARTS)}")
    if not parts:
        raise ConfigError(f"choose at least one LibriSpeech part: {', '.join(PARTS)}")
    return tuple(dict.fromkeys(parts))  # each once, in the order given


def md5sum(path: Path, progress: Progress | None = None) -> str:
    digest, done, total = hashlib.md5(), 0, path.stat().st_size
    name = path.name.removesuffix(".partial")
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
            done += len(block)
            if progress:
                progress(DownloadProgress(name, "verify", done, total))
    return digest.hexdigest()


def fetch(url: str, dest: Path, progress: Progress | None = None) -> None:
    """Download ``url`` to ``dest``, continuing a partial ``dest`` if the server can."""
    done = dest.stat().st_size if dest.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    name = dest.name.removesuffix(".partial")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            if done and getattr(response, "status", None) != 206:
                done = 0  # the server sent the whole file: start again
            length = response.headers.get("Content-Length")
            total = done + int(length) if length else None
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "ab" if done else "wb") as f:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(DownloadProgress(name, "download", done, total))
    except urllib.error.HTTPError as e:
        if e.code == 416 and done:  # nothing left to send: the partial file is complete
            return
        raise AsrkitError(f"{url}: download failed (HTTP {e.code} {e.reason}); try again "
                          "later or another mirror (--mirror)") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise AsrkitError(f"{url}: download failed ({reason}); run again to continue, "
                          "or try another mirror (--mirror)") from None


def extract_part(archive: Path, target: Path, part: str,
                 progress: Progress | None = None) -> Path:
    """Unpack ``archive`` and move its ``LibriSpeech/<part>`` into ``target``.

    Members go to a scratch folder first and the part moves into place in one rename,
    so an interrupted extraction is never mistaken for a finished part.
    """
    scratch = target / f".{part}.extracting"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        safe_extract(archive, scratch, progress)
        unpacked = scratch / "LibriSpeech"
        if not (unpacked / part).is_dir():
            raise AsrkitError(f"{archive}: holds no LibriSpeech/{part}/ folder; is it "
                              f"the {part} archive from openslr.org/12?")
        dest = target / "LibriSpeech"
        dest.mkdir(parents=True, exist_ok=True)
        for doc in unpacked.iterdir():  # README.TXT, SPEAKERS.TXT...: the same in every part
            if doc.is_file() and not (dest / doc.name).exists():
                os.replace(doc, dest / doc.name)
        os.replace(unpacked / part, dest / part)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest / part


def safe_extract(archive: Path, dest: Path, progress: Progress | None = None) -> int:
    """Extract a ``.tar.gz`` into ``dest``; return the number of members.

    Refuses, before writing it, any member that could land outside ``dest`` (absolute
    path, ``..``) and any link or device file, none of which a corpus archive needs.
    """
    n = 0
    try:
        with tarfile.open(archive, "r|gz") as tar:  # streamed: one pass over a 6 GB file
            for member in tar:
                _check_member(member, archive)
                tar.extract(member, dest, **_TAR_FILTER)
                n += 1
                if progress:
                    progress(DownloadProgress(archive.name, "extract", n, None))
    except (tarfile.TarError, zlib.error, EOFError, OSError) as e:
        raise AsrkitError(f"{archive}: cannot extract ({e}); delete it and download "
                          "again, or free disk space") from None
    return n


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise AsrkitError(f"{archive}: refusing to extract {member.name!r}, which would "
                          "be written outside the target folder; the archive is not a "
                          "genuine corpus archive")
    if not (member.isfile() or member.isdir()):
        raise AsrkitError(f"{archive}: refusing to extract {member.name!r}: links and "
                          "special files are not expected in a corpus archive")


def _fetch_verified(url: str, archive: Path, md5: str, progress: Progress | None) -> None:
    """Download to ``<archive>.partial``; rename only once the MD5 matches."""
    partial = archive.with_name(archive.name + ".partial")
    fetch(url, partial, progress)
    got = md5sum(partial, progress)
    if got != md5:
        partial.unlink()
        raise AsrkitError(f"{url}: the download's MD5 is {got}, not the published {md5}; "
                          "it was deleted. Run again, or try another mirror (--mirror)")
    os.replace(partial, archive)


def _corpus_root(corpus: Path) -> Path:
    if (corpus / "LibriSpeech").is_dir():
        return corpus / "LibriSpeech"
    if corpus.is_dir():
        return corpus
    raise ManifestError(f"{corpus}: no such folder; pass the folder holding LibriSpeech/ "
                        "(or add --download to fetch it there)")


def _read_chapter(trans: Path) -> list[Utterance]:
    """Utterances of one ``<speaker>-<chapter>.trans.txt``, each checked for its FLAC."""
    speaker, chapter = trans.parent.parent.name, trans.parent.name
    prefix = f"{speaker}-{chapter}-"
    utts = []
    for lineno, line in read_lines(trans):
        if not line.strip():
            continue
        uid, _, text = line.strip().partition(" ")
        if not (uid.startswith(prefix) and uid[len(prefix):].isdigit() and text.strip()):
            raise ManifestError(f"{where(trans, lineno)}: expected '{prefix}<number> WORDS', "
                                f"got {line.strip()[:60]!r}")
        flac = trans.parent / f"{uid}.flac"
        if not flac.is_file():
            raise ManifestError(f"{where(trans, lineno)}: audio {flac.name} is missing; "
                                "extract the part again")
        utts.append(Utterance(uid, str(flac), " ".join(text.split()), speaker=speaker))
    return utts

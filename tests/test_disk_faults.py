"""A disk that fills up at a seeded random point, and a read-only output folder, for
every command that writes files.

Each case runs the command once on an unlimited disk (the reference, which also
measures how much space the run needs), then again with a random number of bytes free
below that, so the disk fills somewhere in the middle of the work. The failed run must
be one ``error:`` line naming a file and the fix, exit 1, leave no temporary file and
no half-written output (every file left is whole: it loads or parses). Then space is
freed and the documented recovery (``--resume``, ``--skip-done`` or re-running the same
command) must give what the uninterrupted run gave. (An index command may instead
finish when all that did not fit is its query-encoder cache, ``query_encoder.npz``, which
a search derives again when missing: then its result must equal the uninterrupted run's
at once.) A failure names its seed;
``ASRKIT_FAULT_SEED=N`` replays it. (The space is simulated: see ``_faults.small_disk``.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np
import pytest
import torch
import yaml

from _faults import (assert_one_line_error, free_space, invoke, random_seed,
                     read_only_folder, reported_seed, small_disk, snapshot)
from _faults import keep_thread_counts  # noqa: F401 (an autouse fixture)
from asrkit.asr.checkpoint import load_record
from asrkit.lm.ngram import read_arpa
from asrkit.manifest import read_manifest
from asrkit.search.embedding import load_embedder
from test_corpora import write_an4
from tones import make_tone_corpus

TINY_TRAIN = ["--set", "model.layers=1", "--set", "model.hidden=32", "--set",
              "features.n_mels=40", "--set", "train.batch_seconds=4", "--set",
              "train.threads=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Tone-language recordings, a model trained on them, shard indexes, Kaldi and AN4
    folders: the inputs of every case."""
    root = tmp_path_factory.mktemp("inputs")
    d = {"train": make_tone_corpus(root / "train", 12, seed=41),
         "valid": make_tone_corpus(root / "valid", 4, seed=42, prefix="v")}
    run = root / "run"
    trained = invoke("train", "--train", d["train"], "--valid", d["valid"], "--out", run,
                     *TINY_TRAIN, "--set", "train.epochs=4")
    assert trained.exit_code == 0, trained.output
    d["model"] = run / "best.pt"
    d["archive"] = d["train"].parent
    d["half"] = root / "half"
    d["half"].mkdir()
    for wav in sorted(d["archive"].glob("*.wav"))[:6]:
        (d["half"] / wav.name).write_bytes(wav.read_bytes())
    for i in (1, 2):
        d[f"shard{i}"] = root / f"shard{i}"
        built = invoke("index", "build", d["archive"], "--out", d[f"shard{i}"], "--shard",
                       f"{i}/2", "--threads", "1")
        assert built.exit_code == 0, built.output
    d["text"] = root / "lm.txt"
    d["text"].write_text("".join(u.text + "\n" for u in read_manifest(d["train"])) * 3)
    d["kaldi"] = root / "kaldi"
    d["kaldi"].mkdir()
    utts = read_manifest(d["train"])
    (d["kaldi"] / "wav.scp").write_text("".join(f"{u.id} {u.audio}\n" for u in utts))
    (d["kaldi"] / "text").write_text("".join(f"{u.id} {u.text}\n" for u in utts))
    d["an4"] = write_an4(root / "an4")
    d["folder"] = root / "folder"  # recordings with .txt transcripts beside them
    d["folder"].mkdir()
    for u in read_manifest(d["valid"]):
        (d["folder"] / Path(u.audio).name).write_bytes(Path(u.audio).read_bytes())
        (d["folder"] / Path(u.audio).with_suffix(".txt").name).write_text(u.text + "\n")
    return d


# --- what is compared: the output an uninterrupted run gives ---------------------------

def files(d: dict, out: Path):
    return snapshot(out)


def line_set(name: str) -> Callable[[dict, Path], list[str]]:
    """The lines of one file, in any order (a continued run appends the rest)."""
    return lambda d, out: sorted((out / name).read_text().splitlines())


def weights(d: dict, out: Path):
    """Each model file's tensors and the metrics of each epoch (not their timing)."""
    out = out / "run"
    models = {name: {k: v.numpy() for k, v in load_record(out / name)["state_dict"].items()}
              for name in ("best.pt", "last.pt")}
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (out / "metrics.jsonl").read_text().splitlines()]
    return models, metrics, (out / "curve.png").is_file()


def index_answers(folder: str = "") -> Callable[[dict, Path], tuple]:
    """Every recording's segments and vectors, and the answers to a query."""
    def state(d: dict, out: Path) -> tuple:
        out = out / folder if folder else out
        query = sorted(d["valid"].parent.glob("*.wav"))[0]
        with closing(sqlite3.connect(out / "index.sqlite")) as db:
            rows = db.execute("SELECT s.name, s.status, g.start_s, g.end_s, g.vector "
                              "FROM sources s LEFT JOIN segments g ON g.source_id = s.id "
                              "ORDER BY s.name, g.start_s").fetchall()
        found = invoke("search", "query", out, query, "--top", "10", "--json")
        assert found.exit_code == 0, found.output
        return rows, found.stdout
    return state


def exported(d: dict, out: Path):
    """The description beside the export and what the exported module computes."""
    module = torch.jit.load(str(out / "model.ts"))
    wave = torch.from_numpy(np.random.default_rng(0).uniform(-0.3, 0.3, (1, 8000))
                            .astype(np.float32))
    with torch.no_grad():
        result = module(wave, torch.tensor([8000]))
    description = json.loads((out / "model.ts.json").read_text())
    description.pop("created", None)
    return description, [t.numpy().tolist() for t in result]


def same(a, b) -> None:
    """Equal, floating-point arrays to a rounding error (a resumed run's sums differ
    in the last bits)."""
    if isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-4)
    else:
        assert a == b


# --- every file left after a failure is whole ----------------------------------------

def assert_whole(path: Path) -> None:
    """``path`` loads or parses as its kind of file: nothing half-written is left."""
    name = path.name
    assert not name.endswith(".tmp") and ".merging-" not in str(path), path
    if name == "embedder.pt":
        load_embedder(path)
    elif name.endswith(".pt"):
        load_record(path)
    elif name.endswith(".npz"):
        dict(np.load(path))
    elif name.endswith((".jsonl", ".json")) and path.stat().st_size:
        text = path.read_text()
        assert text.endswith("\n"), f"{path}: last line cut short"
        for line in text.splitlines() if name.endswith(".jsonl") else [text]:
            json.loads(line)
    elif name.endswith(".yaml"):
        yaml.safe_load(path.read_text())
    elif name.endswith(".faiss"):
        faiss.read_index(str(path))
    elif name.endswith(".sqlite"):
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    elif name.endswith(".arpa"):
        read_arpa(path)
    elif name.endswith(".png"):
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[-8:-4] == b"IEND", path
    elif name.endswith((".txt", ".tsv")):
        assert path.read_text().endswith("\n"), f"{path}: last line cut short"


# --- the cases ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    args: Callable[[dict, Path], list]  # the command, writing below the given folder
    state: Callable[[dict, Path], object] = files  # what must equal the unbroken run's
    recovery: Callable[[dict, Path], list] | None = None  # None: the same command again
    prepare: Callable[[dict, Path], None] | None = None  # earlier outputs in the folder


def _train_args(d, out):
    return ["train", "--train", d["train"], "--valid", d["valid"], "--out", out / "run",
            *TINY_TRAIN, "--set", "train.epochs=2", "--set", "train.checkpoint_every=2"]


def _train_again(d, out):
    resume = ["--resume"] if (out / "run" / "last.pt").exists() else []
    return _train_args(d, out) + resume


def _index_add_prepare(d, out):
    assert invoke("index", "build", d["half"], "--out", out, "--threads", "1").exit_code == 0


def _merge_args(d, out):
    return ["index", "merge", out / "merged", d["shard1"], d["shard2"]]


CASES = {
    "train": Case(_train_args, weights, _train_again),
    "transcribe -o": Case(
        lambda d, out: ["transcribe", "-m", d["model"], d["valid"].parent, d["train"].parent,
                        "-f", "jsonl", "-o", out / "t.jsonl"],
        line_set("t.jsonl"),
        lambda d, out: ["transcribe", "-m", d["model"], d["valid"].parent, d["train"].parent,
                        "-f", "jsonl", "-o", out / "t.jsonl", "--skip-done"]),
    "transcribe --output-dir": Case(
        lambda d, out: ["transcribe", "-m", d["model"], d["train"], "-f", "jsonl",
                        "--output-dir", out],
        recovery=lambda d, out: ["transcribe", "-m", d["model"], d["train"], "-f", "jsonl",
                                 "--output-dir", out, "--skip-done"]),
    "evaluate --results": Case(
        lambda d, out: ["evaluate", d["model"], d["train"], "--results", out / "r.jsonl"]),
    "align -o": Case(
        lambda d, out: ["align", d["model"], "--manifest", d["train"], "-o", out / "a.jsonl"]),
    "align --output-dir": Case(
        lambda d, out: ["align", d["model"], "--manifest", d["train"], "-f", "textgrid",
                        "--output-dir", out]),
    "calibrate --out": Case(
        lambda d, out: ["calibrate", d["model"], d["train"], "--out", out / "cal.pt",
                        "--plot", out / "rel.png"]),
    "export": Case(
        lambda d, out: ["export", d["model"], "-f", "torchscript", "-o", out / "model.ts"],
        exported),
    "lm build": Case(lambda d, out: ["lm", "build", d["text"], "-o", out / "lm.arpa"]),
    "data import folder": Case(
        lambda d, out: ["data", "import", "folder", d["folder"], "-o", out / "m.jsonl"]),
    "data import kaldi": Case(
        lambda d, out: ["data", "import", "kaldi", d["kaldi"], "-o", out / "m.jsonl"]),
    "data prepare an4": Case(
        lambda d, out: ["data", "prepare", "an4", "--data-dir", d["an4"], "--out", out,
                        "--valid-speakers", "2"]),
    "index build": Case(
        lambda d, out: ["index", "build", d["archive"], "--out", out, "--threads", "1"],
        index_answers()),
    "index add": Case(
        lambda d, out: ["index", "add", out, d["archive"], "--threads", "1"],
        index_answers(), prepare=_index_add_prepare),
    "index merge": Case(_merge_args, index_answers("merged")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_full_disk_fails_cleanly_and_recovers(data, tmp_path, monkeypatch, name):
    case = CASES[name]
    reference = tmp_path / "reference"
    reference.mkdir()
    if case.prepare:
        case.prepare(data, reference)
    with small_disk(monkeypatch, reference, None) as disk:
        result = invoke(*case.args(data, reference))
    assert result.exit_code == 0, result.output
    expected = case.state(data, reference)

    out = tmp_path / "full"
    out.mkdir()
    if case.prepare:
        case.prepare(data, out)
    with reported_seed(random_seed()) as seed:
        free = free_space(seed, disk.peak)
        with small_disk(monkeypatch, out, free):
            failed = invoke(*case.args(data, out))
        if failed.exit_code == 0:  # only a cache it can do without did not fit
            assert not (out / "query_encoder.npz").exists(), failed.output
            same(case.state(data, out), expected)
            return
        line = assert_one_line_error(failed, str(out))
        assert "No space left on device" in line or "full" in line, line
        assert "free disk space" in line.lower(), line
        for path in sorted(out.rglob("*")):
            if path.is_file():
                assert_whole(path)
        again = invoke(*(case.recovery or case.args)(data, out))  # space is back
        assert again.exit_code == 0, again.output
        same(case.state(data, out), expected)


# --- read-only outputs ----------------------------------------------------------------

def _read_only_setup(data, tmp_path, name) -> Path:
    """The output folder of case ``name``, holding its earlier outputs: what ``prepare``
    makes (an index to add to) and a file of an earlier run."""
    out = tmp_path / "ro"
    out.mkdir()
    if CASES[name].prepare:
        CASES[name].prepare(data, out)
    (out / "earlier.jsonl").write_text('{"kept": true}\n')
    return out


def assert_read_only_error(line: str, out: Path) -> None:
    assert str(out) in line, line
    assert "read-only" in line.lower() or "writable" in line, line


@pytest.mark.parametrize("name", list(CASES))
def test_a_read_only_output_is_one_error_line_and_changes_nothing(data, tmp_path,
                                                                monkeypatch, name):
    out = _read_only_setup(data, tmp_path, name)
    before = snapshot(out)
    with read_only_folder(monkeypatch, out):
        result = invoke(*CASES[name].args(data, out))
    assert_read_only_error(assert_one_line_error(result), out)
    assert snapshot(out) == before


_MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _real_read_only_mounts() -> bool:
    """Whether this process may make a private read-only bind mount (root with
    CAP_SYS_ADMIN, ``unshare`` installed): then the read-only cases run on a real one."""
    if shutil.which("unshare") is None:
        return False
    folder = Path(tempfile.mkdtemp())
    try:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                _MOUNT_RO, folder, "sh", "-c", "! touch \"$0/x\" 2>/dev/null",
                                folder], capture_output=True, timeout=60)
        return probe.returncode == 0 and not (folder / "x").exists()
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not _real_read_only_mounts(),
                    reason="no private read-only bind mount here (needs root and unshare)")
@pytest.mark.parametrize("name", list(CASES))
def test_a_real_read_only_mount_is_one_error_line_and_changes_nothing(data, tmp_path, name):
    """The same on a real read-only file system, in a mount namespace of its own: the
    command (as a user runs it) sees EROFS from the kernel, SQLite's too."""
    out = _read_only_setup(data, tmp_path, name)
    before = snapshot(out)
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          _MOUNT_RO, out, sys.executable, "-c",
                          "from asrkit.cli.main import main; main()",
                          *map(str, CASES[name].args(data, out))],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 1, run.stderr[-2000:]
    errors = re.findall(r"error: .*", run.stderr)
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert_read_only_error(errors[0], out)
    assert snapshot(out) == before

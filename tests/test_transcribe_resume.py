"""`transcribe -o FILE --skip-done` after a full disk or a kill: the file holds exactly
one valid record per input, as an uninterrupted run. A line a full disk stopped half-way
is cut off again before the error; one a kill left half-written is cut by --skip-done.

The full disk is an injected writer that writes half of the third transcript and then
fails with ENOSPC, as a real full disk does mid-write.
"""

from __future__ import annotations

import errno
import json
import os

import pytest
from typer.testing import CliRunner

import asrkit.asr.output
from asrkit.asr.output import cut_partial_line, finished_ids
from asrkit.cli.main import app
from tones import make_tone_corpus

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


class DiskFillsMidLine:
    """A text file whose ``fail_at``-th write stores half its text, then ENOSPC."""

    def __init__(self, f, fail_at: int):
        self.f, self.fail_at, self.writes = f, fail_at, 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes == self.fail_at:
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("resume"), 5, seed=2)


@pytest.mark.parametrize("fmt", ["jsonl", "txt"])
def test_resume_after_a_full_disk_cuts_the_partial_line(manifest, tmp_path, monkeypatch, fmt):
    whole = tmp_path / f"whole.{fmt}"
    assert invoke("transcribe", manifest, "-f", fmt, "-o", whole).exit_code == 0

    out = tmp_path / f"out.{fmt}"
    real_open = open
    monkeypatch.setattr(asrkit.asr.output, "open",
                        lambda *a, **k: DiskFillsMidLine(real_open(*a, **k), fail_at=3),
                        raising=False)
    failed = invoke("transcribe", manifest, "-f", fmt, "-o", out)
    assert failed.exit_code == 1 and "No space left on device" in failed.stderr
    assert "the 2 transcript(s) before it are kept" in failed.stderr
    # The half line the full disk let through was cut off again before the error.
    assert out.read_text().splitlines(keepends=True) == \
        whole.read_text().splitlines(keepends=True)[:2]
    monkeypatch.undo()
    # A process killed mid-write cannot cut it: --skip-done does, before appending.
    third = whole.read_text().splitlines(keepends=True)[2]
    with open(out, "a") as f:
        f.write(third[: len(third) // 2])

    resumed = invoke("transcribe", manifest, "-f", fmt, "-o", out, "--skip-done")
    assert resumed.exit_code == 0, resumed.output
    assert "(2 already done)" in resumed.stderr
    assert out.read_text() == whole.read_text()
    if fmt == "jsonl":
        assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == \
            [json.loads(line)["id"] for line in whole.read_text().splitlines()]


def test_a_line_without_its_newline_is_not_done_and_is_cut(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("a\tONE\nb\tTWO\nc\tTH")
    assert finished_ids("txt", out) == {"a", "b"}  # "c" was cut short: do it again
    assert cut_partial_line(out) == len("c\tTH")
    assert out.read_text() == "a\tONE\nb\tTWO\n"
    assert cut_partial_line(out) == 0
    out.write_bytes(b"x" * 200_000)  # no newline at all, longer than one read
    assert cut_partial_line(out) == 200_000 and out.read_bytes() == b""

"""The command line is a thin layer: what it computes lives in the library, where the
Python API gets it too; command modules share code only through cli/common.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import asrkit.cli
from asrkit.asr.evaluation import EvaluationReport, score_utterance
from asrkit.cli.common import EXIT_PARTIAL, ProgressBars
from asrkit.errors import ConfigError
from asrkit.metrics import char_errors, word_errors
from asrkit.search.embedding import EmbedderConfig

CLI_DIR = Path(asrkit.cli.__file__).parent
SHARED = {"common", "decoding_options", "live"}  # option and output helpers, not
# commands (live: the terminal display of `transcribe --stream`)


def relative_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            names |= {node.module} if node.module else {a.name for a in node.names}
    return names


@pytest.mark.parametrize("module", sorted(p.stem for p in CLI_DIR.glob("*.py")
                                          if p.stem not in {"main", "__main__", "__init__"}))
def test_command_modules_import_no_other_command_module(module):
    assert relative_imports(CLI_DIR / f"{module}.py") <= SHARED


def test_exit_codes_are_defined_once():
    assert EXIT_PARTIAL == 3
    for path in CLI_DIR.glob("*.py"):
        text = path.read_text()
        assert "Exit(3)" not in text and "Exit(130)" not in text, path
        if path.stem != "common":
            assert "EXIT_PARTIAL =" not in text, path


def test_results_file_round_trips_the_scores(tmp_path):
    scores = (score_utterance("a", "THE CAT", "THE HAT"), score_utterance("b", "NO", "NO"))
    refs, hyps = [s.reference for s in scores], [s.hypothesis for s in scores]
    report = EvaluationReport(word_errors(refs, hyps), char_errors(refs, hyps), scores, (), 1.0)
    report.write_results(tmp_path / "r.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rows == [s.record() for s in scores]
    assert rows[0] == {"id": "a", "reference": "THE CAT", "hypothesis": "THE HAT",
                       "word_errors": 1, "words": 2, "char_errors": 1}


def test_embedder_config_defaults_match_the_command_line():
    fbank, mfcc = EmbedderConfig.make("fbank"), EmbedderConfig.make("mfcc")
    assert (fbank.autoencoder.input_dim, fbank.autoencoder.stack) == (40, 3)
    assert (mfcc.autoencoder.input_dim, mfcc.frontend.features.n_mfcc) == (13, 13)
    assert fbank.autoencoder.decoder_hidden == fbank.autoencoder.hidden == 160
    asr = EmbedderConfig.make("asr")  # the bundled recogniser, states every 20 ms
    assert (asr.frontend.asr_model, asr.autoencoder.stack) == ("an4", 2)
    with pytest.raises(ConfigError, match="--asr-model is for --features asr"):
        EmbedderConfig.make("fbank", asr_model="an4")
    with pytest.raises(ConfigError, match="fbank, mfcc or asr"):
        EmbedderConfig.make("wav2vec")


def test_progress_bars_follow_done_and_total_and_restart_per_label():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Report:
        stage: str
        done: int
        total: int | None

    seen = []
    with ProgressBars("x", postfix=lambda p: seen.append(p.done) or {}) as bars:
        bars.update(Report("a", 1, 4))
        first = bars.bar
        bars.update(Report("a", 3, 4))
        assert bars.bar is first and (first.n, first.total) == (3, 4)
        bars.update(Report("b", 1, None))
        assert bars.bar is not first and bars.bar.total is None
        bars.count(2, 5)  # plain numbers, as some library calls still report
        assert (bars.bar.n, bars.bar.total) == (2, 5)
    assert bars.bar is None and seen == [1, 3, 1, 2]

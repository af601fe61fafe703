"""Every command exactly as a user types it: each one's --help, and each one run for
real (here, or in the test named in RUN_FOR_REAL)."""

from __future__ import annotations

import ast
import json
import socket
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.main import get_command
from typer.testing import CliRunner

from asrkit.cli.main import app
from tones import make_tone_corpus

TESTS = Path(__file__).parent
PREMOVE = TESTS / "fixtures" / "premove"  # a tiny embedder and two short recordings

runner = CliRunner()
TINY = ["--set", "model.layers=1", "--set", "model.hidden=32", "--set", "features.n_mels=40",
        "--set", "train.batch_seconds=4", "--set", "train.epochs=2", "--set", "train.threads=2"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    train_m = make_tone_corpus(root / "train", 24, seed=3)
    valid_m = make_tone_corpus(root / "valid", 6, seed=4, prefix="v")
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", root / "run", *TINY)
    assert result.exit_code == 0, result.output
    return root, valid_m


def command_tree(command, path=()):
    """``(path, is_group)`` for the command and everything below it."""
    subcommands = getattr(command, "commands", None)
    yield path, subcommands is not None
    for name, sub in (subcommands or {}).items():
        yield from command_tree(sub, (*path, name))


TREE = dict(command_tree(get_command(app)))
COMMANDS = sorted(path for path, group in TREE.items() if not group)

# Where each command is run for real. Commands whose inputs take a fixture of their own
# (a fake corpus release, a trained LM...) are run next to that fixture.
RUN_FOR_REAL = {
    ("train",): "test_cli.py::test_train_writes_self_describing_outputs",
    ("transcribe",): "test_cli.py::test_transcribe_formats",
    ("align",): "test_align.py::test_cli_aligns_a_manifest_skipping_bad_lines",
    ("evaluate",): "test_cli.py::test_evaluate_reports_counts_and_per_utterance_results",
    ("calibrate",): "test_calibration.py::test_cli_calibrate_writes_a_model_whose_transcripts_are_calibrated",
    ("models",): "test_cli.py::test_bundled_model_is_listed_and_used_without_a_model_argument",
    ("export",): "test_export.py::test_cli_exports_a_model_file_and_checks_it",
    ("serve",): "test_cli.py::test_index_search_and_serve_commands_on_a_small_archive",
    ("data", "validate"): "test_corpora.py::test_prepare_command",
    ("data", "synth"): "test_synth.py::test_cli_synth_writes_a_corpus_and_resumes",
    ("data", "synth-archive"): "test_synth.py::test_cli_list_voices_and_archive",
    ("data", "import", "kaldi"): "test_manifest.py::test_cli_import_kaldi",
    ("data", "import", "folder"): "test_manifest.py::test_cli_import_folder",
    ("data", "prepare", "an4"): "test_corpora.py::test_prepare_command",
    ("data", "prepare", "librispeech"): "test_librispeech.py::test_prepare_librispeech_command",
    ("data", "prepare", "commonvoice"): "test_commonvoice.py::test_prepare_commonvoice_command",
    ("data", "prepare", "speechocean762"): "test_speechocean762.py::test_cli_prepare",
    ("lm", "build"): "test_lm.py::test_cli_lm_build",
    ("lm", "tune"): "test_beam.py::test_cli_lm_tune",
    ("embedder", "train"): "test_embedding.py::test_cli_train_then_eval",
    ("embedder", "eval"): "test_embedding.py::test_cli_train_then_eval",
    ("index", "build"): "test_cli.py::test_index_search_and_serve_commands_on_a_small_archive",
    ("index", "add"): "test_cli.py::test_index_search_and_serve_commands_on_a_small_archive",
    ("index", "info"): "test_cli.py::test_index_search_and_serve_commands_on_a_small_archive",
    ("index", "rebuild"): "test_cli.py::test_index_search_and_serve_commands_on_a_small_archive",
    ("index", "remove"): "test_search.py::test_cli_index_build_info_and_remove",
    ("index", "merge"): "test_shards.py::test_cli_index_build_shards_and_merge",
    ("search", "query"): "test_cli.py::test_index_search_and_serve_commands_on_a_small_archive",
    ("search", "eval"): "test_search.py::test_cli_search_eval_reports_embeddings_and_dtw",
    ("search", "calibrate"): "test_detection.py::test_cli_calibrate_then_eval_and_search_with_threshold_auto",
}


@pytest.mark.parametrize("path", sorted(TREE), ids=lambda p: " ".join(p) or "asrkit")
def test_every_command_and_group_has_help(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if TREE[path]:  # a group lists each of its commands
        for sub in TREE:
            if sub[:-1] == path and sub:
                assert sub[-1] in result.output, sub
    else:  # a command says what it does
        assert _help_of(path), f"{' '.join(path)} has no help text"


def _help_of(path) -> str:
    command = get_command(app)
    for name in path:
        command = command.commands[name]
    return (command.help or "").strip()


def test_every_command_is_run_for_real_somewhere():
    """A new command needs a real run: name it here; the test must exist and type the
    command's words (in its body or in a fixture of its module that it uses)."""
    assert sorted(RUN_FOR_REAL) == COMMANDS
    for path, where in RUN_FOR_REAL.items():
        file, name = where.split("::")
        functions = {f.name: f for f in ast.parse((TESTS / file).read_text()).body
                     if isinstance(f, ast.FunctionDef)}
        assert name in functions, f"{' '.join(path)}: {where} does not exist"
        assert path[-1] in _strings(functions, name), f"{where} does not run `{' '.join(path)}`"


def _strings(functions: dict, name: str, seen: frozenset = frozenset()) -> set:
    """String constants in test ``name`` and in the module's fixtures it takes."""
    function = functions[name]
    words = {n.value for n in ast.walk(function) if isinstance(n, ast.Constant)}
    for arg in function.args.args:
        if arg.arg in functions and arg.arg not in seen:
            words |= _strings(functions, arg.arg, seen | {name})
    return words


def test_version():
    assert invoke("--version").output.startswith("asrkit ")


def test_train_writes_self_describing_outputs(trained):
    run = trained[0] / "run"
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.jsonl", "curve.png"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert "hidden: 32" in (run / "config.yaml").read_text()


def test_transcribe_formats(trained):
    root, valid_m = trained
    out = invoke("transcribe", root / "run", root / "valid", "--format", "jsonl")
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 6 and {"id", "text", "words"} <= set(records[0])
    out = invoke("transcribe", root / "run", valid_m, "--format", "srt", "--output-dir",
                 root / "srt")
    assert out.exit_code == 0, out.output
    assert len(list((root / "srt").glob("*.srt"))) == 6


def test_transcribe_skips_bad_files_keeps_the_rest_and_resumes(trained, tmp_path):
    root, _ = trained
    folder = tmp_path / "in"
    shutil.copytree(root / "valid", folder, ignore=shutil.ignore_patterns("*.jsonl"))
    (folder / "broken.wav").write_text("not audio")
    sf.write(folder / "nan.wav", np.full(1600, np.nan, np.float32), 16_000, subtype="FLOAT")
    out_file = tmp_path / "out.jsonl"
    result = invoke("transcribe", root / "run", folder, "-f", "jsonl", "-o", out_file)
    assert result.exit_code == 3
    assert "broken.wav: not a readable audio file" in result.stderr
    assert "NaN" in result.stderr
    assert "Traceback" not in result.output
    assert len(out_file.read_text().splitlines()) == 6
    again = invoke("transcribe", root / "run", folder, "-f", "jsonl", "-o", out_file,
                   "--skip-done")
    assert "(6 already done)" in again.stderr
    assert len(out_file.read_text().splitlines()) == 6


def test_evaluate_reports_counts_and_per_utterance_results(trained, tmp_path):
    root, valid_m = trained
    result = invoke("evaluate", root / "run", valid_m, "--json", "--results", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    words = summary["words"]
    assert summary["utterances"] == 6
    assert words["rate"] == pytest.approx(
        (words["substitutions"] + words["deletions"] + words["insertions"])
        / words["reference_length"], abs=1e-6)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 6


def test_user_errors_are_one_line_without_traceback(trained, tmp_path):
    root, valid_m = trained
    result = invoke("evaluate", tmp_path / "missing.pt", valid_m)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "no such model file" in result.stderr
    result = invoke("train", "--train", valid_m, "--valid", valid_m, "--out", tmp_path / "x",
                    "--set", "train.lrr=1")
    assert result.exit_code == 2 and "unknown key" in result.stderr
    result = invoke("transcribe", root / "run", valid_m, "--lm", "lm.arpa")
    assert result.exit_code == 2 and "greedy decoder takes no lm" in result.stderr  # usage


def test_bundled_model_is_listed_and_used_without_a_model_argument(trained):
    root, _ = trained
    listed = json.loads(invoke("models", "--json").stdout)
    an4 = next(m for m in listed if m["name"] == "an4")
    assert 0 < an4["test_wer"] < 0.5 and "AN4" in an4["trained_on"]
    result = invoke("transcribe", root / "valid" / "v0000.wav", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "v0000"


def test_bundled_fp16_copy_matches_the_trained_model(trained, tmp_path):
    from asrkit.asr.checkpoint import bundle_record, load_model, load_record, save_record
    run = trained[0] / "run"
    save_record(tmp_path / "small.pt", bundle_record(load_record(run / "best.pt"), {"x": 1}))
    assert (tmp_path / "small.pt").stat().st_size < 0.6 * (run / "best.pt").stat().st_size
    full, small = load_model(run / "best.pt"), load_model(tmp_path / "small.pt")
    wave = torch.randn(1, 16_000)
    torch.testing.assert_close(small(wave)[0], full(wave)[0], atol=2e-2, rtol=0)
    assert small.info["x"] == 1


@pytest.fixture
def keep_torch_threads():
    """`--threads` sets torch's thread count for the process, which CliRunner shares
    with later tests; put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_index_search_and_serve_commands_on_a_small_archive(tmp_path, monkeypatch,
                                                            keep_torch_threads):
    """build → add → info → rebuild → search query → serve, with the tiny embedder of
    the compatibility fixtures (fast) on copies of their recordings."""
    archive, more, idx = tmp_path / "archive", tmp_path / "more", tmp_path / "idx"
    shutil.copytree(PREMOVE / "archive" / "audio", archive)
    more.mkdir()
    shutil.copy(PREMOVE / "query.wav", more / "stop.wav")
    built = invoke("index", "build", archive, "--out", idx, "--embedder",
                   PREMOVE / "embedder.pt", "--threads", "1", "--json")
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["indexed"] == 2
    added = invoke("index", "add", idx, more, "--threads", "1", "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["indexed"] == 1
    rebuilt = invoke("index", "rebuild", idx, "--factory", "HNSW32")
    assert rebuilt.exit_code == 0, rebuilt.output
    info = json.loads(invoke("index", "info", idx, "--json").stdout)
    assert info["recordings"] == 3 and info["index_type"].startswith("HNSW32")

    found = invoke("search", "query", idx, PREMOVE / "query.wav", "--top", "2", "--json")
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits[0]["source"] == "stop.wav"  # the query finds itself first

    served = {}
    monkeypatch.setattr("uvicorn.Server.run", lambda server, sockets=None: served.update(
        app=server.config.app, sockets=sockets))
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke("serve", idx, "--port", str(port))
    assert result.exit_code == 0, result.output
    [sock] = served["sockets"]  # serve binds before it prints the URL
    assert sock.getsockname()[:2] == ("127.0.0.1", port)
    sock.close()
    from fastapi.testclient import TestClient
    with TestClient(served["app"], base_url=f"http://127.0.0.1:{port}") as client:
        page = client.get("/api/info").json()  # served on loopback: other hosts are refused
    assert sorted(r["name"] for r in page["recordings"]) == \
        ["archive-000.wav", "archive-001.wav", "stop.wav"]

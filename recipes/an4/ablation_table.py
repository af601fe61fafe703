"""Print the ablation table (Markdown) from the run folders ablation.sh writes.

    python recipes/an4/ablation_table.py exp/an4-ablation
    python recipes/an4/ablation_table.py exp/speechocean762-ablation cer

Each ``<option>-s<seed>`` folder gives its best validation WER (``metrics.jsonl``), its
test WER and CER (``test.json``, greedy) and its training seconds per epoch (validation
included). Rows are options, each seed's test WER listed so the spread shows; the
difference is against the default's mean test WER. With ``cer`` the per-seed figures and
the difference are CER, for runs whose WER is still near 100 % (too early to read).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def read_run(folder: Path) -> dict | None:
    """One finished run's figures, or None while it has no test score."""
    if not (folder / "test.json").is_file() or not (folder / "metrics.jsonl").is_file():
        return None
    history = [json.loads(line) for line in open(folder / "metrics.jsonl") if line.strip()]
    test = json.loads((folder / "test.json").read_text())
    return {"valid_wer": min(h["valid_wer"] for h in history),
            "test_wer": test["wer"], "test_cer": test["cer"],
            "epoch_seconds": history[-1]["seconds"] / history[-1]["epoch"],
            "epochs": history[-1]["epoch"]}


def main(root: Path, metric: str = "wer") -> None:
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for folder in sorted(root.iterdir()):
        match = re.fullmatch(r"(.+)-s(\d+)", folder.name)
        if match and folder.is_dir() and (run := read_run(folder)) is not None:
            runs[match[1]][int(match[2])] = run
    if not runs:
        sys.exit(f"{root}: no finished run (a folder <option>-s<seed> with test.json)")
    key, other = f"test_{metric}", "test_cer" if metric == "wer" else "test_wer"
    name, other_name = metric.upper(), "CER" if metric == "wer" else "WER"
    base = statistics.mean(r[key] for r in runs["default"].values()) \
        if "default" in runs else None
    print(f"| option | seeds | test {name} per seed | mean test {name} | vs default | "
          f"mean test {other_name} | best valid WER | s / epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for option in sorted(runs, key=lambda o: (o != "default", o)):
        by_seed = runs[option]
        mean = {k: statistics.mean(r[k] for r in by_seed.values())
                for k in (key, other, "valid_wer", "epoch_seconds")}
        per_seed = " / ".join(f"{by_seed[s][key]:.2%}" for s in sorted(by_seed))
        delta = "" if base is None or option == "default" else \
            f"{100 * (mean[key] - base):+.2f} pts"
        print(f"| {option} | {len(by_seed)} | {per_seed} | {mean[key]:.2%} | {delta} "
              f"| {mean[other]:.2%} | {mean['valid_wer']:.2%} "
              f"| {mean['epoch_seconds']:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["wer"], ["cer"]):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), *sys.argv[2:])

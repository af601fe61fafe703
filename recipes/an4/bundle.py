"""Write a trained AN4 model as the bundled default (asrkit/pretrained/an4.pt).

    python recipes/an4/bundle.py exp/an4/best.pt exp/an4/test-greedy.jsonl

The greedy test scores are read from the `asrkit evaluate --results` file so the
bundled model states the WER it was measured at.
"""

import json
import sys
from pathlib import Path

from asrkit.asr.checkpoint import bundle_record, load_record, save_record
from asrkit.metrics import char_errors, word_errors


def main(model: str, results: str, out: str = "asrkit/pretrained/an4.pt") -> None:
    rows = [json.loads(line) for line in Path(results).read_text().splitlines()]
    refs, hyps = [r["reference"] for r in rows], [r["hypothesis"] for r in rows]
    info = {"trained_on": "CMU AN4 train (869 utterances, 68 speakers)",
            "test_wer": round(word_errors(refs, hyps).rate, 4),
            "test_cer": round(char_errors(refs, hyps).rate, 4),
            "test_set": "AN4 test, 130 utterances, 10 unseen speakers, greedy decoding"}
    save_record(out, bundle_record(load_record(model), info))
    print(f"wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB): test WER "
          f"{100 * info['test_wer']:.2f}%, CER {100 * info['test_cer']:.2f}%")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Print the files of every complete run under results/: card, history, every radii file, the model and its
ONNX export, the complete-verification log (never checkpoints).

Used to commit a study's results: ``git add $(python scripts/stage-complete-runs.py)``. The model files are
published so that anyone can re-certify a committed number (``tests/test_published_models.py`` does).
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
for card_path in sorted(root.glob("*/*/card.json")):
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError):
        continue
    if card.get("status") == "complete":
        run = card_path.parent
        radii = sorted(p.name for p in run.glob("radii*.parquet"))
        names = ["card.json", "history.csv", "model.pt", "model.onnx", "complete.jsonl", *radii]
        for name in dict.fromkeys(names):
            if (run / name).is_file():
                print(run / name)

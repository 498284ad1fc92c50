"""Print the files of every complete run under results/ (cards, histories, radii; never checkpoints).

Used to commit a study's results: ``git add $(python scripts/stage-complete-runs.py)``.
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
        for name in ("card.json", "history.csv", "radii.parquet"):
            if (card_path.parent / name).is_file():
                print(card_path.parent / name)

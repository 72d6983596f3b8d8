"""Write <rehearsal>/train.jsonl and val.jsonl from the rehearsal's DeepMath folder (device_cluster_check.sh).

    python benchmarks/rehearsal_split.py REHEARSAL_DIR N_TRAIN
"""

import json
import sys
from pathlib import Path

from giftlab.data import load_problems


def main(folder: str, n_train: str) -> None:
    root = Path(folder)
    rows = load_problems(str(root / "data" / "DeepMath-103K"), "r1_solution_1")
    for name, part in (("train", rows[:int(n_train)]), ("val", rows[int(n_train):])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Retailrocket-style shop: data report, event weighting, and matrix factorisation (als) vs a
neural model (neural-mf) vs rekko's best (ease, hybrid) on ranking metrics, all through the
``rekko`` command line.

    python examples/ecommerce/shop.py --out /tmp/shop                 # generated data
    python examples/ecommerce/shop.py --out /tmp/shop --data-dir ~/retailrocket   # the real files

Prints a JSON summary as its last line (read by ``tests/examples/test_ecommerce.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from generate import generate

WEIGHTINGS = {
    "uniform": "view=1,addtocart=1,transaction=1",
    "weighted": "view=1,addtocart=3,transaction=5",
    "purchase-heavy": "view=1,addtocart=10,transaction=30",
}
SHOWN = ["model", "precision@10", "recall@10", "ndcg@10", "hit_rate@10", "coverage@10", "fit_s"]


def rekko(*args: str) -> str:
    """Run the ``rekko`` command of this Python environment."""
    script = Path(sys.executable).parent / "rekko"
    command = [str(script) if script.exists() else shutil.which("rekko") or "rekko", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def evaluate(name: str, args: list[str], out: Path) -> dict[str, dict[str, Any]]:
    """``rekko evaluate`` on a random per-user split, NDCG etc. at 10; prints and returns rows."""
    started = time.perf_counter()
    table = out / f"evaluation-{name}.json"
    rekko("evaluate", *args, "--split", "random", "-k", "10", "-o", str(table))
    rows = json.loads(table.read_text())
    print(f"\n{name} ({time.perf_counter() - started:.0f} s):")
    print("  ".join(f"{c:>12}" for c in SHOWN))
    for row in rows:
        cells = [f"{row[c]:>12.4f}" if c != "model" else f"{row[c]:>12}" for c in SHOWN]
        print("  ".join(cells))
    return {row["model"]: row for row in rows}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/rekko-shop", help="output folder")
    parser.add_argument("--data-dir", help="folder with the real Retailrocket files")
    parser.add_argument("--models", default="popularity,als,neural-mf,ease,hybrid")
    parser.add_argument("--visitors", type=int, default=4000, help="generated visitors")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else generate(out / "data", args.visitors)
    data = ["--dataset", "retailrocket", "--data-dir", str(data_dir)]
    summary: dict[str, Any] = {"data_dir": str(data_dir)}

    print(rekko("explore", *data, "-o", str(out / "explore.html")).strip())
    summary["explore"] = str(out / "explore.html")

    # 1. The models, on the built-in loader (events weighted view=1, addtocart=3,
    #    transaction=5; item category and availability as item features).
    summary["models"] = evaluate(
        "models",
        [*data, "--models", args.models, "--report", str(out / "evaluation.html")],
        out,
    )
    # 2. Event weighting: the same loader with other weights per event type.
    for name, weights in WEIGHTINGS.items():
        rows = evaluate(name, [*data, "--event-weights", weights, "--models", "als"], out)
        summary[name] = rows["als"]
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])

"""How fast ``rekko import`` stores a team's log: generated events into SQLite, PostgreSQL and
MariaDB, end to end (read the CSV, check every row, write in one transaction).

Each database gets a fresh one; the same file is then imported again with ``--force`` (every
row read, checked and found stored already). Writes ``results/import-speed-DATE.md``.

    .venv/bin/python benchmarks/import_speed.py --events 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, header, markdown_table
from sqlalchemy.exc import OperationalError

from rekko.config import DataSpec
from rekko.service.testing import temporary_database
from rekko.store.db import create_db_engine, upgrade_database
from rekko.store.imports import import_data

WEIGHTS = "view=1,addtocart=3,transaction=5"


def generate(path: Path, n: int, seed: int = 0) -> None:
    """A shop log: 50k visitors, 5k products, views / carts / purchases, times in order."""
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "user_id": rng.integers(0, 50_000, n),
            "item_id": rng.integers(0, 5_000, n),
            "event": rng.choice(["view", "addtocart", "transaction"], n, p=[0.8, 0.15, 0.05]),
            "timestamp": 1_700_000_000 + np.sort(rng.integers(0, 10_000_000, n)),
        }
    ).to_csv(path, index=False)


def measure(url: str, path: Path) -> dict[str, object]:
    engine = create_db_engine(url)
    try:
        upgrade_database(engine)
        spec = DataSpec(interactions=str(path))
        started = time.perf_counter()
        first = import_data(engine, spec, event_weights=WEIGHTS)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = import_data(engine, spec, event_weights=WEIGHTS, force=True)
        again_s = time.perf_counter() - started
    finally:
        engine.dispose()
    assert first.stored == first.rows and again.stored == 0
    return {
        "events": first.rows,
        "import s": round(seconds, 2),
        "events/s": round(first.rows / seconds),
        "again s (all stored)": round(again_s, 2),
        "again events/s": round(again.rows / again_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.csv"
        generate(path, args.events)
        for kind in args.databases.split(","):
            try:
                if kind == "sqlite":
                    result = measure(f"sqlite:///{Path(folder) / 'service.db'}", path)
                else:
                    with temporary_database(kind) as url:  # type: ignore[arg-type]
                        result = measure(url, path)
            except OperationalError as error:
                print(f"{kind}: not reachable ({error.orig})")
                continue
            rows.append({"database": kind, **result})
            print(rows[-1])
    table = markdown_table(pd.DataFrame(rows), digits=2)
    text = (
        f"# rekko import speed\n\n{header()}\n\n`python benchmarks/import_speed.py --events "
        f"{args.events}`: a generated shop log (CSV, {args.events:,} events, 50k users, 5k "
        "items), imported end to end into a fresh database, then again with --force.\n\n"
        f"{table}\n"
    )
    out = ROOT / "benchmarks" / "results" / f"import-speed-{time.strftime('%Y-%m-%d')}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

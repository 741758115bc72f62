"""The service on a team's own file against the library on the same file, on the peers' split.

Starts ``rekko serve --interactions ml100k-random/train.csv --model ease`` on a fresh SQLite
database, fetches the top-10 of every user over HTTP, and scores them with the peers'
``score.py``; then ``rekko train`` + ``rekko recommend`` on the same file, scored the same way.
Writes ``results/serve-own-data-DATE.md``.

    .venv/bin/python benchmarks/serve_own_data.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
from common import ROOT, header

BENCH = Path(os.environ.get("REKKO_BENCH", ROOT.parent / "shared" / "bench"))
SPLIT = BENCH / "ml100k" / "ml100k-random"
REKKO = [sys.executable, "-m", "rekko"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def score(predictions: Path) -> float:
    done = subprocess.run(
        [sys.executable, str(BENCH / "score.py"), str(predictions), str(SPLIT)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ndcg@10"])


def main() -> None:
    train = SPLIT / "train.csv"
    users = sorted(pd.read_csv(train)["user_id"].unique().tolist())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        port = free_port()
        started = time.perf_counter()
        server = subprocess.Popen(
            [
                *REKKO,
                "serve",
                "--interactions",
                str(train),
                "--model",
                "ease",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{work / 'db.sqlite'}",
                "--model-dir",
                str(work / "models"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready") as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            ready_s = time.perf_counter() - started
            rows = []
            for user in users:
                url = f"http://127.0.0.1:{port}/users/{user}/recommendations?k=10"
                with urllib.request.urlopen(url) as answer:
                    body = json.load(answer)
                rows += [(user, item["item_id"], item["rank"]) for item in body["items"]]
        finally:
            server.terminate()
            server.wait(30)
        served = work / "served.csv"
        pd.DataFrame(rows, columns=["user_id", "item_id", "rank"]).to_csv(served, index=False)
        subprocess.run(
            [*REKKO, "train", "-i", str(train), "-m", "ease", "-o", str(work / "m")],
            check=True,
            capture_output=True,
        )
        library = work / "library.csv"
        subprocess.run(
            [
                *REKKO,
                "recommend",
                "-m",
                str(work / "m"),
                "--all-users",
                "-k",
                "10",
                "-o",
                str(library),
            ],
            check=True,
            capture_output=True,
        )
        ours, theirs = score(served), score(library)
    text = (
        f"# Serving a team's own file\n\n{header()}\n\n`python benchmarks/serve_own_data.py`: "
        "`rekko serve --interactions ml100k-random/train.csv --model ease` (import, train, "
        f"activate: ready after {ready_s:.1f} s), top-10 of all {len(users)} users over HTTP, "
        "against `rekko train` + `rekko recommend` on the same file; both scored by the "
        "peers' `score.py` on `ml100k-random`.\n\n"
        "| path | NDCG@10 |\n|---|---|\n"
        f"| rekko serve (HTTP) | {ours:.4f} |\n| rekko train + recommend | {theirs:.4f} |\n"
        f"| difference | {ours - theirs:+.4f} |\n"
    )
    out = ROOT / "benchmarks" / "results" / f"serve-own-data-{time.strftime('%Y-%m-%d')}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Travel places (the multitask seed): generated users (age, domicile, occupation), places
(category, coordinates) and view / like / add-to-wishlist events, loaded into a MariaDB table;
a multitask model (retrieval + like + add heads) trained from MariaDB with `rekko train`; the
service trains and recommends, and a distance constraint keeps results near a point.

    python examples/travel/travel.py --out /tmp/travel \
        --database mysql+pymysql://root@127.0.0.1:3306/test

Prints a JSON summary as its last line (read by ``tests/examples/test_travel.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

CITIES = {  # domicile -> (lat, lon)
    "Jakarta": (-6.2088, 106.8456),
    "Bandung": (-6.9175, 107.6191),
    "Yogyakarta": (-7.7956, 110.3695),
    "Semarang": (-6.9667, 110.4167),
    "Surabaya": (-7.2575, 112.7521),
}
CATEGORIES = ["Budaya", "Taman Hiburan", "Cagar Alam", "Bahari", "Pusat Perbelanjaan", "Ibadah"]
OCCUPATIONS = ["student", "employee", "entrepreneur", "civil servant", "retired"]
NEAR = {"near": {"lat": CITIES["Bandung"][0], "lon": CITIES["Bandung"][1], "km": 10}}


def generate(users: int = 600, places: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Users, places and events; users like categories that suit their age and occupation and
    mostly visit places in or near their home city."""
    rng = np.random.default_rng(seed)
    city_names = list(CITIES)
    place_city = rng.choice(city_names, size=places)
    coords = np.array([CITIES[c] for c in place_city]) + rng.normal(0, 0.05, size=(places, 2))
    place_frame = pd.DataFrame(
        {
            "place_id": [f"p{i:04d}" for i in range(places)],
            "category": rng.choice(CATEGORIES, size=places),
            "city": place_city,
            "latitude": coords[:, 0].round(5),
            "longitude": coords[:, 1].round(5),
            "price": rng.choice([0, 5000, 10000, 20000, 50000, 100000], size=places),
        }
    )
    appeal = rng.pareto(1.5, size=places) + 0.1
    user_frame = pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(users)],
            "age": rng.integers(16, 70, size=users),
            "domicile": rng.choice(city_names, size=users),
            "occupation": rng.choice(OCCUPATIONS, size=users),
        }
    )
    rows = []
    t0 = 1_700_000_000
    for user in user_frame.itertuples():
        young = user.age < 30
        liked = rng.choice(CATEGORIES, size=2, replace=False)
        if young:
            liked[0] = "Taman Hiburan"
        weight = appeal * np.where(place_frame["category"].isin(liked), 4.0, 1.0)
        weight = weight * np.where(place_frame["city"] == user.domicile, 3.0, 1.0)
        p = weight / weight.sum()
        picks = rng.choice(places, size=int(rng.integers(4, 25)), replace=False, p=p)
        for i in picks:
            t = t0 + int(rng.integers(0, 90 * 86_400))
            place = place_frame.at[int(i), "place_id"]
            rows.append((user.user_id, place, "view", t))
            fits = place_frame.at[int(i), "category"] in liked
            if rng.random() < (0.55 if fits else 0.15):
                rows.append((user.user_id, place, "like", t + 60))
                if rng.random() < 0.5:
                    rows.append((user.user_id, place, "add", t + 120))
    events = pd.DataFrame(rows, columns=["user_id", "place_id", "event", "ts"])
    return {"users": user_frame, "places": place_frame, "events": events}


def _rekko(*args: str) -> str:
    script = Path(sys.executable).parent / "rekko"
    command = [str(script) if script.exists() else shutil.which("rekko") or "rekko", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rekko {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """A new, uniquely named database on the server of ``server`` (dropped afterwards)."""
    url = sa.make_url(server)
    name = f"travel_service_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def wait_for(http: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll ``GET /training/jobs/{id}`` until the job has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/training/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise RuntimeError(f"training job {job_id} did not finish in {timeout:.0f} s")


def serve(
    frames: dict[str, pd.DataFrame], user: str, k: int, epochs: int, database: str
) -> dict[str, Any]:
    """A fresh service whose database is a new MariaDB database: places and users in, events
    in, a multitask training job, then recommendations with and without the distance
    constraint."""
    from fastapi.testclient import TestClient

    from rekko.service import create_app
    from rekko.service.settings import ServeSettings

    with tempfile.TemporaryDirectory() as folder, scratch_database(database) as url:
        settings = ServeSettings(
            database_url=url,
            model_dir=Path(folder) / "models",
            training_executor="thread",
            bootstrap_demo=False,
            sync_interval_s=0.2,
        )
        with TestClient(create_app(settings)) as http:
            places = frames["places"]
            items = [
                {"item_id": r.pop("place_id"), "features": r}
                for r in json.loads(places.to_json(orient="records"))
            ]
            http.put("/items", json={"items": items}).raise_for_status()
            people = [
                {"user_id": r.pop("user_id"), "features": r}
                for r in json.loads(frames["users"].to_json(orient="records"))
            ]
            http.put("/users", json={"users": people}).raise_for_status()
            events = [
                {"user_id": u, "item_id": i, "type": e, "time": int(t), "event_id": f"{u}{i}{e}"}
                for u, i, e, t in frames["events"].itertuples(index=False)
            ]
            for start in range(0, len(events), 5000):
                http.post("/events", json={"events": events[start : start + 5000]})
            params = {"max_epochs": epochs, "embedding_dim": 32, "heads": {"like": 1, "add": 1}}
            job = http.post("/training/jobs", json={"algorithm": "multitask", "params": params})
            job.raise_for_status()
            done = wait_for(http, job.json()["job_id"])
            if done["status"] != "succeeded":
                raise RuntimeError(f"training failed: {done}")
            if not done["activated"]:
                http.post(f"/models/{done['version']}/activate").raise_for_status()
            fields = "category,city,latitude,longitude"
            plain = http.get(f"/users/{user}/recommendations", params={"k": k, "fields": fields})
            near = http.get(
                f"/users/{user}/recommendations",
                params={"k": k, "fields": fields, "filters": json.dumps(NEAR)},
            )
            return {
                "job": done,
                "plain": plain.json(),
                "near": near.json(),
                "database": sa.make_url(url).render_as_string(hide_password=True),
            }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/rekko-travel")
    parser.add_argument("--database", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--table", help="table name (default: a new unique one)")
    parser.add_argument("--keep-table", action="store_true", help="do not drop the table")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = generate()
    users, places, events = frames["users"], frames["places"], frames["events"]
    print(
        f"{len(users)} users, {len(places)} places, events:",
        events["event"].value_counts().to_dict(),
    )
    places.to_csv(out / "places.csv", index=False)
    users.to_csv(out / "users.csv", index=False)
    table = args.table or f"travel_events_{secrets.token_hex(4)}"
    summary: dict[str, Any] = {"table": table}

    engine = sa.create_engine(args.database)
    try:
        events.to_sql(table, engine, index=False, if_exists="replace")
        print(f"loaded {len(events)} events into {table}")
        started = time.perf_counter()
        _rekko(
            "train", "-i", args.database, "--table", table,
            "--user-col", "user_id", "--item-col", "place_id", "--event-col", "event",
            "--timestamp-col", "ts", "--event-weights", "view=1,like=2,add=3",
            "--items", str(out / "places.csv"), "--users", str(out / "users.csv"),
            "-m", "multitask", "-p", f"max_epochs={args.epochs}", "-p", "embedding_dim=32",
            "-o", str(out / "model"),
        )  # fmt: skip
        print(f"trained multitask from MariaDB in {time.perf_counter() - started:.1f} s")
    finally:
        if not args.keep_table:
            with engine.begin() as connection:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()

    from rekko.models import load_model

    model = load_model(out / "model")
    user = "u0001"
    recs = model.recommend([user], k=args.k)
    heads = model.predict_heads(user, list(recs["item_id"]))
    info = places.set_index("place_id")
    print(f"multitask for {user} {users.set_index('user_id').loc[user].to_dict()}:")
    for row in heads.itertuples(index=False):
        place = info.loc[row.item_id]
        print(
            f"  {row.item_id} {place['category']:<18} {place['city']:<10} "
            f"score {row.score:.3f}  P(like) {row.like:.2f}  P(add) {row.add:.2f}"
        )
    summary["heads"] = json.loads(heads.to_json(orient="records"))
    summary["seen"] = sorted(events.loc[events["user_id"] == user, "place_id"].unique())

    # honest check of the heads: over 100 users' own places, liked ones should get a higher
    # P(like) than the places they only viewed
    on_liked, on_other = [], []
    for who in sorted(events["user_id"].unique())[:100]:
        theirs = events[events["user_id"] == who]
        scored = model.predict_heads(who, sorted(theirs["place_id"].unique()))
        mask = scored["item_id"].isin(set(theirs.loc[theirs["event"] == "like", "place_id"]))
        on_liked += list(scored.loc[mask, "like"])
        on_other += list(scored.loc[~mask, "like"])
    summary["like_on_liked"] = float(np.mean(on_liked))
    summary["like_on_not_liked"] = float(np.mean(on_other))
    print(
        f"  mean P(like) over 100 users' places: liked {summary['like_on_liked']:.3f}, "
        f"only viewed {summary['like_on_not_liked']:.3f}"
    )

    started = time.perf_counter()
    answers = serve(frames, user, args.k, args.epochs, args.database)
    print(
        f"service on {answers['database']}: trained {answers['job']['version']} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    for key in ("plain", "near"):
        print(
            f"  GET /users/{user}/recommendations" + (f" filters={NEAR}" if key == "near" else "")
        )
        for item in answers[key]["items"]:
            f = item["fields"]
            km = _km(NEAR["near"]["lat"], NEAR["near"]["lon"], f["latitude"], f["longitude"])
            item["km"] = km
            print(f"    {item['item_id']} {f['category']:<18} {f['city']:<10} {km:6.1f} km")
    summary["http"] = answers
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])

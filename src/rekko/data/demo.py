"""A built-in, deterministic demo data set: a small shop, with no download.

Users have hidden tastes (a favourite category and a price sensitivity); items have a category,
tags, a text description, a price and a shop location; users view items that match their taste,
put some in the cart and buy a few of those. The structure is strong enough that good models
clearly beat popularity, and small enough that the main job and fast tests run in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rekko.data.dataset import Dataset, EventWeights

CATEGORIES = ("books", "music", "garden", "kitchen", "toys", "outdoor", "art", "games")
_WORDS = {
    "books": ("novel", "paperback", "story", "poetry", "history", "mystery"),
    "music": ("vinyl", "album", "guitar", "jazz", "piano", "headphones"),
    "garden": ("seeds", "planter", "hose", "compost", "tulip", "shears"),
    "kitchen": ("knife", "pan", "spice", "kettle", "bowl", "ceramic"),
    "toys": ("puzzle", "plush", "blocks", "train", "doll", "kite"),
    "outdoor": ("tent", "lantern", "hiking", "backpack", "bottle", "compass"),
    "art": ("canvas", "brush", "watercolor", "sketchbook", "ink", "easel"),
    "games": ("board", "dice", "cards", "strategy", "party", "chess"),
}
_ADJECTIVES = (
    "handmade",
    "vintage",
    "modern",
    "minimalist",
    "colourful",
    "classic",
    "eco",
    "large",
)
_CITIES = ((52.52, 13.40), (48.86, 2.35), (51.51, -0.13), (41.39, 2.17))

#: Event weights of the demo shop (also a sensible default for view/cart/purchase logs).
DEMO_EVENT_WEIGHTS = EventWeights({"view": 1.0, "addtocart": 3.0, "transaction": 5.0})


def demo_frames(
    n_users: int = 600, n_items: int = 400, seed: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw frames ``(events, items, users)`` with external string ids, as a reader would give."""
    rng = np.random.default_rng(seed)
    item_category = rng.integers(len(CATEGORIES), size=n_items)
    price = np.round(np.exp(rng.normal(3.0, 0.8, size=n_items)), 2)
    quality = rng.normal(0, 1, size=n_items)
    city = rng.integers(len(_CITIES), size=n_items)
    lat = np.array([_CITIES[c][0] for c in city]) + rng.normal(0, 0.05, size=n_items)
    lon = np.array([_CITIES[c][1] for c in city]) + rng.normal(0, 0.05, size=n_items)
    titles, tags = [], []
    for index in range(n_items):
        category = CATEGORIES[item_category[index]]
        words = rng.choice(_WORDS[category], size=3, replace=False)
        adjective = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
        titles.append(f"{adjective} {words[0]} {words[1]} with {words[2]}")
        tags.append("|".join(sorted({adjective, str(words[0])})))
    items = pd.DataFrame(
        {
            "item_id": [f"i{index:04d}" for index in range(n_items)],
            "category": [CATEGORIES[c] for c in item_category],
            "tags": tags,
            "title": titles,
            "price": price,
            "latitude": np.round(lat, 5),
            "longitude": np.round(lon, 5),
        }
    )

    favourite = rng.integers(len(CATEGORIES), size=n_users)
    second = (favourite + rng.integers(1, len(CATEGORIES), size=n_users)) % len(CATEGORIES)
    budget = np.exp(rng.normal(3.2, 0.6, size=n_users))
    activity = np.clip(rng.lognormal(2.6, 0.7, size=n_users).astype(int), 5, 120)
    age = rng.integers(16, 75, size=n_users)
    users = pd.DataFrame(
        {
            "user_id": [f"u{index:04d}" for index in range(n_users)],
            "age": age,
            "country": rng.choice(["DE", "FR", "GB", "ES"], size=n_users),
        }
    )

    rows: list[tuple[str, str, str, int]] = []
    start = 1_700_000_000
    for user in range(n_users):
        affinity = np.where(item_category == favourite[user], 2.5, 0.0)
        affinity += np.where(item_category == second[user], 1.2, 0.0)
        affinity += 0.6 * quality - 0.8 * np.abs(np.log(price / budget[user]))
        probability = np.exp(affinity - affinity.max())
        probability /= probability.sum()
        n_views = int(activity[user])
        viewed = rng.choice(n_items, size=min(n_views, n_items), replace=False, p=probability)
        times = np.sort(start + rng.integers(0, 90 * 86_400, size=len(viewed)))
        for item, when in zip(viewed, times, strict=True):
            rows.append((f"u{user:04d}", f"i{item:04d}", "view", int(when)))
            strength = affinity[item]
            if rng.random() < 1 / (1 + np.exp(-(strength - 1.5))):
                rows.append((f"u{user:04d}", f"i{item:04d}", "addtocart", int(when) + 60))
                if rng.random() < 0.5:
                    rows.append((f"u{user:04d}", f"i{item:04d}", "transaction", int(when) + 600))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp"])
    return events, items, users


def load_demo(n_users: int = 600, n_items: int = 400, seed: int = 7) -> Dataset:
    """The demo shop as a :class:`Dataset` (implicit events weighted view=1, cart=3, buy=5)."""
    events, items, users = demo_frames(n_users, n_items, seed)
    return Dataset.from_frame(
        events,
        item_features=items,
        user_features=users,
        item_feature_kinds={
            "category": "categorical",
            "tags": "multi",
            "title": "text",
            "price": "numeric",
            "latitude": "latitude",
            "longitude": "longitude",
        },
        user_feature_kinds={"age": "numeric", "country": "categorical"},
        event_weights=DEMO_EVENT_WEIGHTS,
        name="demo",
    )


#: The rating that ``ratings.csv`` gives a pair: its strongest event (viewed only, put in the
#: cart, bought), on a 1-5 scale.
DEMO_EVENT_RATINGS = {"view": 3, "addtocart": 4, "transaction": 5}

DEMO_FILES = ("events.csv", "items.csv", "users.csv", "ratings.csv")


def demo_ratings(events: pd.DataFrame) -> pd.DataFrame:
    """One explicit rating per (user, item) pair of ``events``: its strongest event's rating.

    Columns ``user_id, item_id, rating, timestamp`` (the time of that pair's last event), sorted
    by user and item.
    """
    rated = events.assign(rating=events["event"].map(DEMO_EVENT_RATINGS))
    if rated["rating"].isna().any():
        unknown = sorted(set(events["event"]) - set(DEMO_EVENT_RATINGS))
        raise ValueError(f"events of unknown types {unknown}: expected {list(DEMO_EVENT_RATINGS)}")
    pairs = rated.groupby(["user_id", "item_id"], sort=True, as_index=False).agg(
        rating=("rating", "max"), timestamp=("timestamp", "max")
    )
    return pairs.astype({"rating": "int64", "timestamp": "int64"})


def write_demo_files(
    folder: str | Path, n_users: int = 600, n_items: int = 400, seed: int = 7
) -> list[Path]:
    """Write the demo shop as CSV files into ``folder`` (created when missing).

    ``events.csv`` (user_id, item_id, event, timestamp), ``items.csv`` (item_id and its
    features), ``users.csv`` (user_id, age, country) and ``ratings.csv`` (see
    :func:`demo_ratings`). Returns the paths written, in that order.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    events, items, users = demo_frames(n_users, n_items, seed)
    frames = (events, items, users, demo_ratings(events))
    paths = [target / name for name in DEMO_FILES]
    for frame, path in zip(frames, paths, strict=True):
        frame.to_csv(path, index=False)
    return paths

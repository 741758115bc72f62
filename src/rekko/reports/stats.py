"""Statistics of a data set that the explore report shows: pure functions, no drawing.

Counting rule, stated once: an *interaction* is a (user, item) pair of the :class:`Dataset`,
after repeated events were aggregated (see :mod:`rekko.data.dataset`). Raw events are the sum of
the pairs' ``count``. A pair's event type is its strongest event, and its timestamp its latest
event, so "per event type" and "over time" count pairs, not raw log lines.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rekko.data.dataset import Dataset, FeatureTable

#: Item shares whose hold on interactions the long-tail section reports.
TOP_SHARES: tuple[float, ...] = (0.01, 0.10, 0.20)
#: Buckets of interactions per user / item in the sparsity chart (lower bounds).
ACTIVITY_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 1),
    ("1", 1, 2),
    ("2\u20134", 2, 5),
    ("5\u20139", 5, 10),
    ("10\u201349", 10, 50),
    ("50+", 50, math.inf),
)
MAX_EVENT_TYPES = 6
SECONDS_PER_DAY = 86_400


def user_counts(dataset: Dataset) -> npt.NDArray[np.int64]:
    """Interactions (distinct items) per user index, users without any included."""
    return np.bincount(dataset.interactions["user"].to_numpy(), minlength=dataset.n_users)


def event_counts(dataset: Dataset) -> pd.DataFrame | None:
    """Interactions per event type (most frequent first), or None without event types.

    Columns: ``event``, ``interactions`` (pairs whose strongest event is this type), ``share``,
    ``raw_events`` (all events aggregated into those pairs, whatever their type).
    """
    frame = dataset.interactions
    if "event" not in frame.columns:
        return None
    grouped = frame.groupby("event", sort=False).agg(
        interactions=("count", "size"), raw_events=("count", "sum")
    )
    grouped = grouped.sort_values("interactions", ascending=False, kind="stable")
    out = grouped.reset_index()
    out["share"] = out["interactions"] / max(len(frame), 1)
    return out[["event", "interactions", "share", "raw_events"]]


def top_share_table(popularity: npt.NDArray[np.int64]) -> pd.DataFrame:
    """Share of all interactions held by the top 1%, 10% and 20% most popular items."""
    ordered = np.sort(popularity)[::-1]
    total = max(int(ordered.sum()), 1)
    rows = []
    for share in TOP_SHARES:
        n_top = max(1, math.ceil(share * len(ordered)))
        held = int(ordered[:n_top].sum())
        rows.append({"top": share, "items": n_top, "interactions": held, "share": held / total})
    return pd.DataFrame(rows)


def gini(counts: npt.NDArray[np.int64]) -> float:
    """Gini coefficient of counts: 0 when all are equal, near 1 when one holds everything."""
    values = np.sort(counts.astype(np.float64))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float((2 * (ranks * values).sum()) / (n * values.sum()) - (n + 1) / n)


def cold_start_table(dataset: Dataset) -> pd.DataFrame:
    """Users and items with 0, 1 and fewer than 5 interactions (counts and shares)."""
    rows = []
    for side, counts in (
        ("Users", user_counts(dataset)),
        ("Items", np.asarray(dataset.item_popularity)),
    ):
        total = max(len(counts), 1)
        for label, mask in (
            ("0 interactions", counts == 0),
            ("1 interaction", counts == 1),
            ("fewer than 5", counts < 5),
        ):
            n = int(mask.sum())
            rows.append({"side": side, "group": label, "count": n, "share": n / total})
    return pd.DataFrame(rows)


def bucket_shares(counts: npt.NDArray[np.int64]) -> list[float]:
    """Share of ``counts`` in each :data:`ACTIVITY_BUCKETS` bucket."""
    total = max(len(counts), 1)
    return [
        float(((counts >= low) & (counts < high)).sum()) / total
        for _, low, high in ACTIVITY_BUCKETS
    ]


def _present(values: pd.Series, kind: str) -> npt.NDArray[np.bool_]:
    if kind == "multi":
        return np.array([isinstance(v, tuple) and len(v) > 0 for v in values], dtype=np.bool_)
    if kind in ("numeric", "latitude", "longitude"):
        return np.asarray(pd.to_numeric(values, errors="coerce").notna().to_numpy(), dtype=np.bool_)
    return np.array([v is not None and str(v).strip() != "" for v in values], dtype=np.bool_)


def _distinct(values: pd.Series, kind: str, present: npt.NDArray[np.bool_]) -> int | None:
    chosen = values[present]
    if kind == "multi":
        return len({label for labels in chosen for label in labels})
    if kind in ("categorical", "text"):
        return int(chosen.nunique())
    return None


def feature_coverage(dataset: Dataset) -> pd.DataFrame:
    """Share of items / users with each feature present (all ids of the catalogue).

    Columns: ``side`` ("item" / "user"), ``feature``, ``kind``, ``present``, ``share``,
    ``distinct`` (labels or values for categorical, multi-valued and text features).
    """
    rows: list[dict[str, Any]] = []
    tables: tuple[tuple[str, FeatureTable | None, int], ...] = (
        ("item", dataset.item_features, dataset.n_items),
        ("user", dataset.user_features, dataset.n_users),
    )
    for side, features, size in tables:
        if features is None:
            continue
        frame = features.frame
        for name, kind in features.kinds.items():
            present = _present(frame[name], kind)
            rows.append(
                {
                    "side": side,
                    "feature": name,
                    "kind": kind,
                    "present": int(present.sum()),
                    "share": float(present.sum()) / max(size, 1),
                    "distinct": _distinct(frame[name], kind, present),
                }
            )
    return pd.DataFrame(rows, columns=["side", "feature", "kind", "present", "share", "distinct"])


def user_activity_features(dataset: Dataset) -> pd.DataFrame:
    """One row per user with at least one interaction: activity measures for the heatmap."""
    frame = dataset.interactions
    users = frame["user"].to_numpy()
    popularity = np.asarray(dataset.item_popularity, dtype=np.float64)
    data: dict[str, Any] = {
        "user": users,
        "count": frame["count"].to_numpy(),
        "value": frame["value"].to_numpy(dtype=np.float64),
        "item_popularity": popularity[frame["item"].to_numpy()],
    }
    grouped_input = pd.DataFrame(data)
    grouped = grouped_input.groupby("user", sort=True)
    out = pd.DataFrame(
        {
            "distinct items": grouped.size(),
            "mean value": grouped["value"].mean(),
            "mean item popularity": grouped["item_popularity"].mean(),
        }
    )
    if (frame["count"].to_numpy() > 1).any():  # else identical to distinct items
        out.insert(1, "raw events", grouped["count"].sum())
    if dataset.has_timestamps:
        seconds = frame["timestamp"].to_numpy(dtype=np.int64)
        days = seconds // SECONDS_PER_DAY
        pairs = np.unique(np.stack([users, days], axis=1), axis=0)
        out["active days"] = pd.Series(np.bincount(pairs[:, 0], minlength=dataset.n_users))[
            out.index
        ].to_numpy()
        times = pd.DataFrame({"user": users, "seconds": seconds}).groupby("user")["seconds"]
        out["span (days)"] = (times.max() - times.min()) / SECONDS_PER_DAY
    events = event_counts(dataset)
    if events is not None:
        for event in events["event"].head(MAX_EVENT_TYPES):
            is_event = (frame["event"] == event).to_numpy(dtype=np.float64)
            share = pd.Series(is_event).groupby(users).mean()
            out[f"share {event}"] = share[out.index].to_numpy()
    if dataset.user_features is not None:
        for name in dataset.user_features.columns_of("numeric"):
            values = dataset.user_features.frame[name].to_numpy(dtype=np.float64)
            out[name] = values[out.index.to_numpy()]
    out.index.name = "user"
    return out


def activity_correlations(dataset: Dataset) -> pd.DataFrame:
    """Spearman correlations between the per-user activity measures (constant ones dropped).

    Rank correlation, because activity counts are heavy-tailed: one very active user would
    otherwise decide a Pearson coefficient.
    """
    features = user_activity_features(dataset)
    varying = [name for name in features.columns if features[name].nunique(dropna=True) > 1]
    return features[varying].corr(method="spearman")


def time_table(dataset: Dataset, frequency: str) -> pd.DataFrame:
    """Interactions per period (``"D"``, ``"W"``, ``"M"`` or ``"Y"``) and event type.

    Columns: ``period`` (start, as a timestamp), one column per event type (when the data has
    them), ``interactions``, ``active users``.
    """
    frame = dataset.interactions
    moments = pd.to_datetime(frame["timestamp"].to_numpy(dtype=np.int64), unit="s")
    periods = pd.Series(moments).dt.to_period(frequency).dt.start_time
    table = pd.DataFrame({"period": periods.to_numpy(), "user": frame["user"].to_numpy()})
    out = table.groupby("period").agg(
        interactions=("user", "size"), active_users=("user", "nunique")
    )
    if "event" in frame.columns:
        events = event_counts(dataset)
        assert events is not None
        crossed = pd.crosstab(table["period"], frame["event"].to_numpy())
        for event in events["event"]:
            out.insert(len(out.columns) - 2, str(event), crossed[event])
    out = out.rename(columns={"active_users": "active users"})
    full = pd.period_range(out.index.min(), out.index.max(), freq=frequency).start_time
    return out.reindex(full, fill_value=0).rename_axis("period").reset_index()

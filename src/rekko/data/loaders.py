"""Built-in loaders for public data sets in their native layout, with features and quirks handled.

Each loader reads the files as their publisher ships them and returns a :class:`Dataset`. The
quirks of each set and what the loader does about them are written in its docstring.
:data:`DATASETS` lists the loaders by name for the command line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from rekko.data.dataset import ITEM, TIMESTAMP, USER, VALUE, Dataset, EventWeights, FeatureKind
from rekko.data.readers import (
    ColumnMap,
    closest_column,
    header_columns,
    interactions_location,
    missing_column,
    normalize_ids,
    read_interactions,
    read_text_file,
)
from rekko.data.validation import Location
from rekko.errors import DataError

logger = logging.getLogger(__name__)

#: The 19 genres of MovieLens 100K in flag order (``u.genre``), used if that file is missing.
ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

#: Retailrocket's default event weights: a purchase says more than a cart, a cart more than a view.
RETAILROCKET_EVENT_WEIGHTS = EventWeights({"view": 1.0, "addtocart": 3.0, "transaction": 5.0})

_ML100K_RATINGS = ("user_id", "item_id", "rating", "timestamp")


def _folder(folder: str | Path, what: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"{what} folder not found", source=str(path))
    return path


def _required(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir() if p.is_file())
        suggestion = closest_column(name, found)
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise DataError(
            f"required file {name!r} not found (files: {', '.join(found) or 'none'}){hint}",
            source=str(folder),
        )
    return path


def _optional(folder: Path, name: str) -> Path | None:
    path = folder / name
    if path.is_file():
        return path
    logger.info("%s not found in %s: loading without it", name, folder)
    return None


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], source: Path) -> None:
    for column in columns:
        if column not in frame.columns:
            raise missing_column(column, [str(c) for c in frame.columns], source=str(source))


# -- MovieLens ------------------------------------------------------------------------------
def _ml100k_ratings(path: Path) -> pd.DataFrame:
    """A headerless ``user item rating timestamp`` file of MovieLens 100K (u.data, u1.base...).

    A line with fewer fields leaves the last ones missing: :meth:`Dataset.from_frame` names it.
    """
    return read_text_file(
        path, sep="\t", encoding="latin-1", names=list(_ML100K_RATINGS), header=False
    )


def _headerless(source: str) -> Location:
    """Where rows of a MovieLens 100K file come from: it has no header, so line 1 is row 1."""
    return Location(source, first_row=1)


def _ml100k_features(
    folder: Path,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, Location | None, Location | None]:
    """Item and user features (``u.item``, ``u.user``) and where their rows came from."""
    items: pd.DataFrame | None = None
    items_at: Location | None = None
    item_path = _optional(folder, "u.item")
    if item_path is not None:
        genre_path = _optional(folder, "u.genre")
        genres = ML100K_GENRES
        if genre_path is not None:
            table = read_text_file(
                genre_path, sep="|", encoding="latin-1", names=["genre", "flag"], header=False
            ).dropna()
            genres = tuple(table.sort_values("flag")["genre"].astype(str))
        names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *genres]
        raw = read_text_file(
            item_path,
            sep="|",
            encoding="latin-1",
            names=names,
            header=False,
            dtype={"title": str, "release_date": str},
        )
        flags = raw[list(genres)].fillna(0).to_numpy(dtype=np.int64) == 1
        released = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
        items_at = _headerless(str(item_path))
        items = pd.DataFrame(
            {
                "item_id": normalize_ids(raw["item_id"]),
                "title": raw["title"],
                "year": released.dt.year.astype(float),
                "genres": [
                    "|".join(g for g, on in zip(genres, row, strict=True) if on) for row in flags
                ],
            }
        )
    users: pd.DataFrame | None = None
    users_at: Location | None = None
    user_path = _optional(folder, "u.user")
    if user_path is not None:
        users = read_text_file(
            user_path,
            sep="|",
            encoding="latin-1",
            names=["user_id", "age", "gender", "occupation", "zip"],
            header=False,
            dtype={"gender": str, "occupation": str, "zip": str},
        )
        users["user_id"] = normalize_ids(users["user_id"])
        users_at = _headerless(str(user_path))
    return items, users, items_at, users_at


_ML100K_ITEM_KINDS: dict[str, FeatureKind] = {"title": "text", "year": "numeric", "genres": "multi"}
_ML100K_USER_KINDS: dict[str, FeatureKind] = {
    "age": "numeric",
    "gender": "categorical",
    "occupation": "categorical",
    "zip": "categorical",
}


def load_movielens_100k(folder: str | Path) -> Dataset:
    """MovieLens 100K from its extracted folder (``ml-100k``): 100,000 explicit 1-5 ratings.

    ``u.data`` is required; ``u.item`` (latin-1) and ``u.user`` add features when present:
    items get ``title`` (text), ``year`` (numeric, from the release date; missing for the one
    movie without a date) and ``genres`` (multi, named from ``u.genre``); users get ``age``
    (numeric), ``gender``, ``occupation`` and ``zip`` (categorical, kept as text).
    """
    root = _folder(folder, "MovieLens 100K")
    ratings = _ml100k_ratings(_required(root, "u.data"))
    items, users, items_at, users_at = _ml100k_features(root)
    return Dataset.from_frame(
        ratings,
        item_features=items,
        user_features=users,
        item_feature_kinds=_ML100K_ITEM_KINDS if items is not None else None,
        user_feature_kinds=_ML100K_USER_KINDS if users is not None else None,
        name="movielens-100k",
        source=_headerless("u.data"),
        item_features_source=items_at,
        user_features_source=users_at,
    )


def load_movielens_split(folder: str | Path, name: str = "u1") -> tuple[Dataset, Dataset]:
    """One of MovieLens 100K's official splits (``u1``..``u5``, ``ua``, ``ub``) as (train, test).

    Both parts share the id maps and feature tables of the full data set (built from
    ``u.data`` and the feature files, then extended by any id only the split files have), so an
    index means the same user or item in train, in test and in :func:`load_movielens_100k`.
    """
    if not re.fullmatch(r"u[1-5ab]", name):
        raise DataError(f"unknown MovieLens 100K split {name!r} (use u1..u5, ua or ub)")
    root = _folder(folder, "MovieLens 100K")
    full = load_movielens_100k(root)
    base = _ml100k_ratings(_required(root, f"{name}.base"))
    test = _ml100k_ratings(_required(root, f"{name}.test"))
    users = full.users.extend(pd.concat([base["user_id"], test["user_id"]]))
    items = full.items.extend(pd.concat([base["item_id"], test["item_id"]]))
    parts = []
    for frame, part in ((base, "train"), (test, "test")):
        source = f"{name}.{'base' if part == 'train' else 'test'}"
        dataset = Dataset.from_frame(
            frame,
            users=users,
            items=items,
            name=f"movielens-100k-{name}-{part}",
            source=_headerless(source),
        )
        parts.append(_with_features(dataset, full))
    train, held_out = parts
    return train, held_out


def _with_features(dataset: Dataset, full: Dataset) -> Dataset:
    """``dataset`` carrying ``full``'s feature tables (grown to the size of its id maps)."""
    item_features = full.item_features.reindexed(dataset.n_items) if full.item_features else None
    user_features = full.user_features.reindexed(dataset.n_users) if full.user_features else None
    return Dataset(
        dataset.interactions,
        dataset.users,
        dataset.items,
        dataset.explicit,
        item_features,
        user_features,
        dataset.name,
    )


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def load_movielens_latest(folder: str | Path) -> Dataset:
    """A MovieLens "latest" or 20M/25M/32M folder with ``ratings.csv`` (and optional extras).

    * ``ratings.csv`` (``userId,movieId,rating,timestamp``): explicit ratings, required;
    * ``movies.csv`` (``movieId,title,genres``): ``title`` (text), ``year`` (numeric, from the
      ``(1995)`` at the end of the title) and ``genres`` (multi; ``(no genres listed)`` = none);
    * ``tags.csv`` (``userId,movieId,tag,timestamp``): ``tags`` (multi), each movie's distinct
      tags in lower case, in order of first use.

    Movies that only appear in ``movies.csv`` or ``tags.csv`` are cold items.
    """
    root = _folder(folder, "MovieLens")
    columns = ColumnMap(user="userId", item="movieId", rating="rating", timestamp="timestamp")
    ratings_path = _required(root, "ratings.csv")
    ratings = read_interactions(ratings_path, columns=columns)
    items: pd.DataFrame | None = None
    kinds: dict[str, FeatureKind] = {}
    movies_path = _optional(root, "movies.csv")
    if movies_path is not None:
        movies = read_text_file(
            movies_path, sep=",", encoding="utf-8", dtype={"title": str, "genres": str}
        )
        _require_columns(movies, ("movieId", "title", "genres"), movies_path)
        titles = movies["title"].fillna("")
        items = pd.DataFrame(
            {
                ITEM: normalize_ids(movies["movieId"]),
                "title": titles,
                "year": pd.to_numeric(titles.str.extract(_YEAR_IN_TITLE)[0], errors="coerce"),
                "genres": movies["genres"].fillna("").replace("(no genres listed)", ""),
            }
        )
        kinds = {"title": "text", "year": "numeric", "genres": "multi"}
    tags_path = _optional(root, "tags.csv")
    if tags_path is not None:
        tags = read_text_file(tags_path, sep=",", encoding="utf-8", dtype={"tag": str})
        _require_columns(tags, ("movieId", "tag"), tags_path)
        per_movie = _tags_per_item(normalize_ids(tags["movieId"]), tags["tag"])
        if items is None:
            items = per_movie
        else:
            items = items.merge(per_movie, on=ITEM, how="outer", sort=False)
            items["tags"] = [t if isinstance(t, tuple) else () for t in items["tags"]]
        kinds["tags"] = "multi"
    return Dataset.from_frame(
        ratings,
        item_features=items,
        item_feature_kinds=kinds or None,
        name=f"movielens-{root.name}",
        source=interactions_location(ratings_path, columns=columns),
    )


def _tags_per_item(item_ids: pd.Series, tags: pd.Series) -> pd.DataFrame:
    """One row per item with a tuple of its distinct lower-cased tags (first use first)."""
    frame = pd.DataFrame({ITEM: item_ids, "tag": tags.astype(str).str.strip().str.lower()})
    frame = frame[tags.notna().to_numpy() & (frame["tag"] != "").to_numpy()]
    frame = frame.drop_duplicates([ITEM, "tag"])
    grouped = frame.groupby(ITEM, sort=False)["tag"].agg(tuple)
    return pd.DataFrame({ITEM: grouped.index.to_numpy(), "tags": list(grouped.to_numpy())})


# -- Retailrocket ---------------------------------------------------------------------------
def load_retailrocket(
    folder: str | Path, *, event_weights: EventWeights | Mapping[str, float] | None = None
) -> Dataset:
    """The Retailrocket e-commerce data set (Kaggle) from its folder.

    * ``events.csv`` (``timestamp,visitorid,event,itemid,transactionid``), required: implicit
      events weighted by ``event_weights`` (default view=1, addtocart=3, transaction=5) and
      summed per (visitor, item); timestamps are milliseconds and become seconds;
    * ``item_properties_part1.csv`` / ``_part2.csv`` (``timestamp,itemid,property,value``):
      the latest ``categoryid`` (as ``category``) and ``available`` (numeric 0/1) per item;
      the other (hashed) properties are skipped;
    * ``category_tree.csv`` (``categoryid,parentid``): ``parent_category`` of each item.

    Items that only have properties are part of the catalogue (cold items).
    """
    root = _folder(folder, "Retailrocket")
    events_path = _required(root, "events.csv")
    columns = ColumnMap(user="visitorid", item="itemid", event="event", timestamp="timestamp")
    events = read_interactions(events_path, columns=columns)
    stamps = pd.to_numeric(events[TIMESTAMP], errors="coerce")
    if stamps.notna().all():
        events[TIMESTAMP] = (stamps.to_numpy(dtype=np.float64) // 1000).astype(np.int64)
    items = _retailrocket_items(root)
    kinds: dict[str, FeatureKind] = {
        "category": "categorical",
        "available": "numeric",
        "parent_category": "categorical",
    }
    return Dataset.from_frame(
        events,
        item_features=items,
        item_feature_kinds={k: v for k, v in kinds.items() if items is not None and k in items},
        event_weights=RETAILROCKET_EVENT_WEIGHTS if event_weights is None else event_weights,
        aggregate="sum",
        name="retailrocket",
        source=interactions_location(events_path, columns=columns),
    )


_KEPT_PROPERTIES = ("categoryid", "available")


def _retailrocket_items(root: Path) -> pd.DataFrame | None:
    parts = []
    for name in ("item_properties_part1.csv", "item_properties_part2.csv"):
        path = _optional(root, name)
        if path is not None:
            parts.append(_latest_properties(path))
    if not parts:
        return None
    latest = pd.concat(parts, ignore_index=True)
    latest = latest.sort_values("timestamp", kind="stable").drop_duplicates(
        [ITEM, "property"], keep="last"
    )
    items = latest.pivot(index=ITEM, columns="property", values="value")
    items = items.reindex(columns=list(_KEPT_PROPERTIES)).reset_index()
    items.columns = pd.Index([ITEM, "category", "available"])
    items[ITEM] = normalize_ids(items[ITEM])
    items["available"] = pd.to_numeric(items["available"], errors="coerce")
    tree_path = _optional(root, "category_tree.csv")
    if tree_path is not None:
        tree = read_text_file(
            tree_path, sep=",", encoding="utf-8", dtype={"categoryid": str, "parentid": str}
        )
        _require_columns(tree, ("categoryid", "parentid"), tree_path)
        parents = dict(zip(tree["categoryid"].str.strip(), tree["parentid"], strict=True))
        items["parent_category"] = items["category"].map(parents)
    return items


def _latest_properties(path: Path) -> pd.DataFrame:
    """The rows of a Retailrocket property file about the properties we keep.

    The two files hold about 20 million rows: they are streamed and filtered as they are read
    (by pyarrow, or by pandas in chunks when pyarrow cannot parse the file).
    """
    found = header_columns(path, sep=",")
    for column in _PROPERTY_COLUMNS:
        if column not in found:
            raise missing_column(column, found, source=str(path))
    frame = _kept_properties_arrow(path)
    if frame is None:
        kept = []
        try:
            chunks = pd.read_csv(
                path, usecols=list(_PROPERTY_COLUMNS), dtype=str, chunksize=1_000_000
            )
            for chunk in chunks:
                chosen = chunk[chunk["property"].isin(_KEPT_PROPERTIES)]
                kept.append(chosen.assign(line=chosen.index.to_numpy() + 2))
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataError(f"cannot parse the file: {exc}", source=str(path)) from None
        frame = pd.concat(kept, ignore_index=True)
    frame = frame.rename(columns={"itemid": ITEM})
    stamps = pd.to_numeric(frame["timestamp"], errors="coerce")
    if stamps.isna().any():
        first = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DataError(
            f"expected a number, got {frame['timestamp'].iloc[first]!r}",
            source=str(path),
            row=int(frame["line"].iloc[first]),
            column="timestamp",
        )
    frame["timestamp"] = stamps.astype(np.int64)
    return frame.drop(columns="line")


_PROPERTY_COLUMNS = ("timestamp", "itemid", "property", "value")


def _kept_properties_arrow(path: Path) -> pd.DataFrame | None:
    """The kept property rows with their file line, streamed by pyarrow (None if it fails)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    wanted = pa.array(_KEPT_PROPERTIES)
    parts = []
    start = 0
    try:
        reader = pacsv.open_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=list(_PROPERTY_COLUMNS),
                column_types=dict.fromkeys(_PROPERTY_COLUMNS, pa.string()),
            ),
        )
        for batch in reader:
            lines = pa.array(np.arange(start + 2, start + 2 + batch.num_rows))
            start += batch.num_rows
            table = pa.Table.from_batches([batch]).append_column("line", lines)
            parts.append(table.filter(pc.is_in(batch.column("property"), value_set=wanted)))
    except (pa.lib.ArrowException, ValueError, OSError):
        return None
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=str) for name in (*_PROPERTY_COLUMNS, "line")})
    frame: pd.DataFrame = pa.concat_tables(parts).to_pandas()
    return frame


# -- Fiverr ---------------------------------------------------------------------------------
_FIVERR_COLUMNS = (
    "illustrator_name",
    "gig_rating",
    "gig_price_from",
    "gig_url",
    "gig_design_type",
    "gig_design_style",
    "client_origins",
    "client_names",
    "illustrator_origins",
)


def fiverr_gig_id(url: str) -> str:
    """A gig's id from its listing URL: the ``seller/gig-slug`` path, without tracking query."""
    return urlsplit(str(url).strip()).path.strip("/")


def load_fiverr(path_or_folder: str | Path) -> Dataset:
    """The Fiverr illustration gigs (``fiverr_data.csv``, UTF-8 with a byte-order mark).

    * Items are gigs, keyed by the gig URL's path ``seller/gig-slug``: the full URLs differ
      only in tracking parameters (listing position, impression id), and 10 gigs were listed
      twice, so the 2,666 rows hold 2,656 gigs. Every gig is in the catalogue, including
      those no client reviewed (cold items).
    * Users are clients (``client_names``); each row with a client is one implicit interaction
      (value 1). A client listed twice under one gig counts once (``aggregate="max"``).
    * Item features: ``gig_design_type``, ``gig_design_style``, ``illustrator_name`` and
      ``illustrator_origins`` (categorical), ``gig_price_from`` and ``gig_rating`` (numeric;
      the gig's overall rating, not the client's), and ``text``: design type, style and the
      words of the gig's slug, for free-text queries. User feature: ``client_origins``.
    """
    path = Path(path_or_folder)
    if path.is_dir():
        path = _required(path, "fiverr_data.csv")
    raw = read_text_file(path, sep=",", encoding="utf-8-sig", dtype={"client_names": str})
    _require_columns(raw, _FIVERR_COLUMNS, path)
    if raw["gig_url"].isna().any():
        row = int(np.flatnonzero(raw["gig_url"].isna().to_numpy())[0]) + 2
        raise DataError("missing gig URL", source=str(path), row=row, column="gig_url")
    raw[ITEM] = raw["gig_url"].map(fiverr_gig_id)
    slug_words = raw[ITEM].str.split("/").str[-1].str.replace("-", " ", regex=False)
    raw["text"] = (
        raw["gig_design_type"].fillna("")
        + " "
        + raw["gig_design_style"].fillna("")
        + " "
        + slug_words.fillna("")
    ).str.strip()
    item_columns = [
        "gig_design_type",
        "gig_design_style",
        "gig_price_from",
        "gig_rating",
        "illustrator_name",
        "illustrator_origins",
        "text",
    ]
    # A gig listed twice keeps the first value seen of each feature.
    items = raw.groupby(ITEM, sort=False)[item_columns].first().reset_index()
    clients = raw["client_names"].str.strip()
    with_client = clients.notna().to_numpy() & (clients != "").to_numpy()
    interactions = pd.DataFrame(
        {USER: clients[with_client].to_numpy(), ITEM: raw.loc[with_client, ITEM].to_numpy()}
    )
    origins = raw.loc[with_client, "client_origins"].to_numpy()
    users = (
        pd.DataFrame({USER: interactions[USER].to_numpy(), "client_origins": origins})
        .groupby(USER, sort=False)["client_origins"]
        .first()
        .reset_index()
    )
    return Dataset.from_frame(
        interactions,
        item_features=items,
        user_features=users,
        item_feature_kinds={
            "gig_design_type": "categorical",
            "gig_design_style": "categorical",
            "gig_price_from": "numeric",
            "gig_rating": "numeric",
            "illustrator_name": "categorical",
            "illustrator_origins": "categorical",
            "text": "text",
        },
        user_feature_kinds={"client_origins": "categorical"},
        aggregate="max",
        name="fiverr",
        source=path.name,
    )


# -- Seefud ---------------------------------------------------------------------------------
def load_seefud(folder: str | Path) -> Dataset:
    """The Seefud Indonesian recipes (``product3.csv``) and user interactions (``user3.csv``).

    * Items are recipes keyed by ``Title``, exactly as written (7 titles differ from another
      only by spaces and stay distinct). 286 rows repeat an earlier title, some with other
      ingredients: the first row of each title is kept, giving 1,726 recipes with features
      ``title`` and ``ingredients`` (text); ``Combined`` (title + ingredients) is dropped.
    * ``user3.csv`` (``UserID,Title,InteractionType``): implicit interactions with value
      ``InteractionType`` (1 on every row; rows with 0 mean no interaction and are dropped).
      The 28 repeated (user, title) rows are summed: a pair's value is its number of rows.
    """
    root = _folder(folder, "Seefud")
    products_path = _required(root, "product3.csv")
    products = read_text_file(
        products_path, sep=",", encoding="utf-8-sig", dtype={"Title": str, "Ingredients": str}
    )
    _require_columns(products, ("Title", "Ingredients"), products_path)
    first = products.drop_duplicates("Title", keep="first")
    if len(first) < len(products):
        logger.info("seefud: kept the first of %d repeated titles", len(products) - len(first))
    items = pd.DataFrame(
        {ITEM: first["Title"], "title": first["Title"], "ingredients": first["Ingredients"]}
    )
    columns = ColumnMap(user="UserID", item="Title", value="InteractionType")
    interactions_path = _required(root, "user3.csv")
    interactions = read_interactions(interactions_path, columns=columns)
    at = interactions_location(interactions_path, columns=columns)
    kept = (pd.to_numeric(interactions[VALUE], errors="coerce") != 0).to_numpy()
    if not kept.all():
        # The kept rows keep their line numbers in errors.
        interactions = interactions[kept].reset_index(drop=True)
        at = replace(at, rows=np.flatnonzero(kept) + at.first_row)
    return Dataset.from_frame(
        interactions,
        item_features=items,
        item_feature_kinds={"title": "text", "ingredients": "text"},
        aggregate="sum",
        name="seefud",
        source=at,
    )


# -- registry -------------------------------------------------------------------------------
class BuiltinDataset(NamedTuple):
    """A loader of a data set in its native layout, and one line about it."""

    loader: Callable[[Path], Dataset]
    description: str


DATASETS: dict[str, BuiltinDataset] = {
    "movielens-100k": BuiltinDataset(
        load_movielens_100k,
        "MovieLens 100K: 100,000 explicit ratings, 943 users, 1,682 movies, genres, demographics",
    ),
    "movielens-latest": BuiltinDataset(
        load_movielens_latest,
        "MovieLens latest / 20M / 25M / 32M (ratings.csv, movies.csv, tags.csv)",
    ),
    "retailrocket": BuiltinDataset(
        load_retailrocket,
        "Retailrocket e-commerce events (view, addtocart, transaction) with item categories",
    ),
    "fiverr": BuiltinDataset(
        load_fiverr, "Fiverr illustration gigs: sparse client reviews, rich gig features"
    ),
    "seefud": BuiltinDataset(
        load_seefud, "Seefud Indonesian recipes with text features and generated interactions"
    ),
}


def load_builtin(
    name: str, folder: str | Path, *, event_weights: EventWeights | None = None
) -> Dataset:
    """Load the built-in data set ``name`` (a key of :data:`DATASETS`) from ``folder``.

    ``event_weights`` applies to data sets with event types (Retailrocket); giving weights for
    one without them is an error rather than silently ignored.
    """
    if name not in DATASETS:
        suggestion = closest_column(name, list(DATASETS))
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise DataError(f"unknown data set {name!r} (known: {', '.join(DATASETS)}){hint}")
    if event_weights is not None:
        if name != "retailrocket":
            raise DataError(f"data set {name!r} has no event types to weigh")
        return load_retailrocket(Path(folder), event_weights=event_weights)
    return DATASETS[name].loader(Path(folder))


__all__ = [
    "DATASETS",
    "ML100K_GENRES",
    "RETAILROCKET_EVENT_WEIGHTS",
    "BuiltinDataset",
    "fiverr_gig_id",
    "load_builtin",
    "load_fiverr",
    "load_movielens_100k",
    "load_movielens_latest",
    "load_movielens_split",
    "load_retailrocket",
    "load_seefud",
]

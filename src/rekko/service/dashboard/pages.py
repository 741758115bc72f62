"""The dashboard pages: overview, user, item and "Try it", rendered on the server.

Every page reads at most one page of rows (users, items, events) from the database or the
in-memory catalogue, so it stays fast on a catalogue of 100,000 items.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Integer, cast, func, select
from starlette.concurrency import run_in_threadpool

from rekko.constraints import Constraint, parse_constraints
from rekko.errors import DataError, ModelError, UnknownIdError
from rekko.service.dashboard.html import (
    card,
    item_link,
    link,
    metric_label,
    number,
    page,
    table,
    text,
    user_link,
)
from rekko.service.dashboard.keys import require_read_key, set_key_cookie
from rekko.service.schemas import PathId
from rekko.service.serving import Ranked, ServedModel
from rekko.service.state import ServiceState
from rekko.store import repository as repo
from rekko.store.imports import list_imports
from rekko.store.schema import events, items, users

PAGE_SIZE = 25
TOP_K = 10
HISTORY_SHOWN = 20
FIELDS_SHOWN = ("title", "category", "tags", "price")


router = APIRouter(
    prefix="/dashboard", include_in_schema=False, dependencies=[Depends(require_read_key)]
)


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _html(request: Request, content: str) -> Response:
    """An HTML response; a key given as ``?key=`` is kept in a cookie for the next pages."""
    return set_key_cookie(request, HTMLResponse(content))


def _title(state: ServiceState, item_id: str) -> str:
    title = state.catalogue.features.get(item_id, {}).get("title")
    return str(title) if title is not None else ""


#: What the scores of the shared fallback routes count, for the score column's header.
SCORE_HEADERS = {
    "popularity": "users who took it",
    "preferences": "users who took it",
    "keywords": "words matched",
    "history": "similarity to history",
    "basket": "similarity to basket",
    "co-occurrence": "taken together",
}


def score_header(ranked: Ranked) -> str:
    """The score column's header: "score" for the model's own scores, else what the
    fallback route's scores count (a popularity count is no model score)."""
    return SCORE_HEADERS.get(ranked.fallback or "", "score")


def _score(value: float, ranked: Ranked) -> str:
    counted = ranked.fallback in ("popularity", "preferences", "keywords", "co-occurrence")
    return number(round(value)) if counted else f"{value:.3f}"


def _item_rows(state: ServiceState, ranked: Ranked, reasons: dict[str, str]) -> list[list[str]]:
    return [
        [
            str(rank),
            item_link(item_id),
            text(_title(state, item_id))
            + (f'<div class="reason">{text(reasons[item_id])}</div>' if item_id in reasons else ""),
            _score(score, ranked),
        ]
        for rank, (item_id, score) in enumerate(
            zip(ranked.item_ids, ranked.scores, strict=True), start=1
        )
    ]


# -- overview ------------------------------------------------------------------------------
def _overview_data(state: ServiceState, offset: int) -> dict[str, Any]:
    now = time.time()
    minute = cast(events.c.occurred_at / 60, Integer)
    with state.engine.connect() as connection:
        n_users = connection.execute(select(func.count()).select_from(users)).scalar_one()
        n_items = connection.execute(
            select(func.count()).select_from(items).where(items.c.status != "deleted")
        ).scalar_one()
        n_events = connection.execute(select(func.count()).select_from(events)).scalar_one()
        per_minute = dict(
            connection.execute(
                select(minute, func.count())
                .where(events.c.occurred_at >= now - 3600)
                .group_by(minute)
            ).all()
        )
        # Imports and late events arrive now but happened earlier: said apart, not charted.
        received = connection.execute(
            select(func.count())
            .select_from(events)
            .where(events.c.received_at >= now - 3600, events.c.occurred_at < now - 3600)
        ).scalar_one()
        item_page = connection.execute(
            select(items.c.item_id, items.c.features)
            .where(items.c.status == "active")
            .order_by(items.c.item_id)
            .limit(PAGE_SIZE + 1)
            .offset(offset)
        ).all()
    online = state.recent_online_metrics()
    return {
        "imports": list_imports(state.engine),
        "users": n_users,
        "items": n_items,
        "events": n_events,
        "per_minute": per_minute,
        "received_earlier": received,
        "now_minute": int(now // 60),
        "item_page": item_page,
        "online": online,
        "versions": state.registry.list(),
        "active": state.registry.active,
    }


@router.get("", response_class=HTMLResponse)
async def overview(
    request: Request, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0
) -> Response:
    state = _state(request)
    data = await run_in_threadpool(_overview_data, state, offset)
    stats = "".join(
        f'<div class="stat">{label}<b data-stat="{label.lower()}">{number(value)}</b></div>'
        for label, value in (
            ("Users", data["users"]),
            ("Items", data["items"]),
            ("Events", data["events"]),
        )
    )
    active = data["active"] or "none"
    stats += f'<div class="stat">Active model<b id="active-version">{text(active)}</b></div>'
    metric_names = sorted({name for info in data["versions"] for name in info.metrics})
    offline = table(
        ["version", "algorithm", "status", *map(metric_label, metric_names)],
        (
            [
                text(info.version) + (" ★" if info.version == data["active"] else ""),
                text(info.algorithm),
                text("active" if info.version == data["active"] else info.status),
                *(
                    number(info.metrics[name]) if name in info.metrics else "-"
                    for name in metric_names
                ),
            ]
            for info in reversed(data["versions"][-20:])
        ),
        css_id="offline-metrics",
    )
    online = table(
        ["version", "requests", "items shown", "followed", "follow rate"],
        (
            [
                text(row["model_version"]),
                number(row["requests"]),
                number(row["impressions"]),
                number(row["followed"]),
                f"{row['follow_rate']:.2%}",
            ]
            for row in data["online"]
        ),
        css_id="online-metrics",
    )
    counts = [data["per_minute"].get(data["now_minute"] - back, 0) for back in range(59, -1, -1)]
    tallest = max(counts) or 1
    bars = "".join(
        f'<span style="height:{100 * count / tallest:.0f}%" title="{count}"></span>'
        for count in counts
    )
    rate = (
        f'<p id="events-rate">By event time: {number(counts[-1])} '
        f"event{'' if counts[-1] == 1 else 's'} in the current minute, "
        f"{number(sum(counts))} in the last hour.</p>"
    )
    if data["received_earlier"]:
        rate += (
            f'<p class="muted" id="events-imported">{number(data["received_earlier"])} more '
            "received in the last hour happened earlier (imports, late events).</p>"
        )
    imported = (
        table(
            ["source", "rows", "events stored", "last row taken", "last read"],
            (
                [
                    text(row["source"]),
                    number(row["rows"]),
                    number(row["stored"]),
                    text("-" if row["watermark"] is None else str(row["watermark"])),
                    text(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row["updated_at"]))),
                ]
                for row in data["imports"]
            ),
            css_id="imports",
        )
        if data["imports"]
        else '<p class="muted" id="imports">Nothing imported: events come through POST /events '
        "(or rekko import, rekko serve --interactions).</p>"
    )
    page_rows = data["item_page"][:PAGE_SIZE]
    catalogue = table(
        ["item", "title", "category"],
        (
            [
                item_link(row.item_id),
                text(row.features.get("title", "")),
                text(row.features.get("category", "")),
            ]
            for row in page_rows
        ),
        css_id="items",
    )
    pager = []
    if offset > 0:
        pager.append(link(f"/dashboard?offset={max(0, offset - PAGE_SIZE)}", "← previous"))
    if len(data["item_page"]) > PAGE_SIZE:
        pager.append(link(f"/dashboard?offset={offset + PAGE_SIZE}", "next →"))
    body = (
        f'<div class="stats">{stats}</div><div class="grid" style="margin-top:1rem">'
        + card("Offline metrics by version", offline, wide=True)
        + card(
            "Online metrics by version (last 7 days)",
            online + '<p><a href="/dashboard/online">Per hour, as charts →</a></p>',
        )
        + card("Events per minute (last hour)", f'<div class="bars">{bars}</div>{rate}')
        + card("Imported data", imported, wide=True)
        + card("Catalogue", catalogue + f'<div class="pager">{"".join(pager)}</div>', wide=True)
        + "</div>"
    )
    return _html(request, page("Overview", body))


# -- users ---------------------------------------------------------------------------------
def _find_users(state: ServiceState, query: str) -> list[str]:
    pattern = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    statement = (
        select(users.c.user_id)
        .where(users.c.user_id.like(pattern, escape="\\"))
        .order_by(users.c.user_id)
        .limit(PAGE_SIZE)
    )
    with state.engine.connect() as connection:
        found = [row.user_id for row in connection.execute(statement)]
        if not found:
            statement = select(events.c.user_id).where(events.c.user_id == query).limit(1)
            found = [row.user_id for row in connection.execute(statement)]
    return found


@router.get("/users", response_class=HTMLResponse)
async def user_search(request: Request, q: Annotated[str, Query(max_length=256)] = "") -> Response:
    state = _state(request)
    query = q.strip()
    found = await run_in_threadpool(_find_users, state, query) if query else []
    if query in found:
        return RedirectResponse(f"/dashboard/users/{quote(query, safe='')}", status_code=303)
    listing = "".join(f"<li>{user_link(user_id)}</li>" for user_id in found)
    body = card(
        "Users",
        f'<ul id="user-results">{listing}</ul>' if found else '<p class="muted">No user found.</p>',
    )
    return _html(request, page(f"Users matching “{query}”", body, query=query))


def _neighbour_reasons(served: ServedModel, history: list[str], ranked: Ranked) -> dict[str, str]:
    """ "because you liked X": the history item each recommendation is most similar to."""
    model = served.model
    known = [item_id for item_id in history if served.knows_item(item_id)]
    if not known or not ranked.item_ids or not model.abilities.similar_items:
        return {}
    wanted = set(ranked.item_ids)
    frame = model.similar_items(known, k=min(served.n_items - 1, 200))
    frame = frame[frame["similar_item_id"].astype(str).isin(wanted)]
    best = frame.sort_values("score", ascending=False).drop_duplicates("similar_item_id")
    return {
        str(similar): str(source)
        for source, similar in zip(best["item_id"], best["similar_item_id"], strict=True)
    }


def _content_reasons(served: ServedModel, user_id: str, ranked: Ranked) -> dict[str, str]:
    model = served.model
    if not model.abilities.explains or not served.knows_user(user_id):
        return {}
    reasons: dict[str, str] = {}
    for item_id in ranked.item_ids:
        try:
            why = model.explain(item_id, user=user_id)
        except (DataError, ModelError):
            continue
        if why:
            reasons[item_id] = "matches " + "; ".join(str(part) for part in why[:3])
    return reasons


def _user_data(state: ServiceState, user_id: str) -> dict[str, Any]:
    history = repo.user_items(state.engine, user_id, limit=HISTORY_SHOWN)
    features = repo.get_user(state.engine, user_id)
    served = state.served(user_id)
    if served is None:
        return {"history": history, "features": features, "ranked": None, "reasons": {}}
    ranked = served.recommend_user(user_id, TOP_K, None, sorted(state.catalogue.blocked))
    reasons = _content_reasons(served, user_id, ranked)
    if not reasons:
        liked = _neighbour_reasons(served, history, ranked)
        reasons = {
            item_id: f"because you liked {_title(state, source) or source} ({source})"
            for item_id, source in liked.items()
        }
    return {"history": history, "features": features, "ranked": ranked, "reasons": reasons}


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user_view(request: Request, user_id: PathId) -> Response:
    state = _state(request)
    data = await run_in_threadpool(_user_data, state, user_id)
    history = table(
        ["item", "title"],
        ([item_link(item_id), text(_title(state, item_id))] for item_id in data["history"]),
        css_id="history",
    )
    ranked: Ranked | None = data["ranked"]
    if ranked is None:
        recommendations = '<p class="error">No model is active yet.</p>'
    else:
        note = f" (fallback: {text(ranked.fallback)})" if ranked.fallback else ""
        recommendations = f'<p class="muted">model {text(ranked.version)}{note}</p>' + table(
            ["#", "item", "title", score_header(ranked)],
            _item_rows(state, ranked, data["reasons"]),
            css_id="recommendations",
        )
    features = data["features"] or {}
    about = " · ".join(f"{text(k)}: {text(v)}" for k, v in features.items())
    body = (
        (f'<p class="muted">{about}</p>' if about else "")
        + '<div class="grid">'
        + card("History (most recent first)", history)
        + card("Recommendations", recommendations)
        + "</div>"
    )
    return _html(request, page(f"User {user_id}", body, query=user_id))


# -- items ---------------------------------------------------------------------------------
def _item_data(state: ServiceState, item_id: str) -> dict[str, Any]:
    record = repo.get_item(state.engine, item_id)
    served = state.served(None)
    similar: Ranked | None = None
    note = ""
    if served is not None:
        try:
            similar = served.similar(item_id, TOP_K, None, sorted(state.catalogue.blocked))
        except UnknownIdError:
            note = "The active model does not know this item yet."
    return {"record": record, "similar": similar, "note": note}


@router.get("/items/{item_id}", response_class=HTMLResponse)
async def item_view(request: Request, item_id: PathId) -> Response:
    state = _state(request)
    data = await run_in_threadpool(_item_data, state, item_id)
    record: repo.ItemRecord | None = data["record"]
    if record is None:
        response = _html(request, page(f"Item {item_id}", '<p class="error">Unknown item.</p>'))
        response.status_code = 404
        return response
    features = table(
        ["feature", "value"],
        (
            [text(name), text(", ".join(map(str, value)) if isinstance(value, list) else value)]
            for name, value in sorted(record.features.items())
        ),
        css_id="features",
    )
    features = f'<p class="muted">status: {text(record.status)}</p>' + features
    similar: Ranked | None = data["similar"]
    if similar is None:
        listing = f'<p class="muted">{text(data["note"] or "No model is active yet.")}</p>'
    else:
        listing = table(
            ["#", "item", "title", score_header(similar)],
            _item_rows(state, similar, {}),
            css_id="similar",
        )
    body = '<div class="grid">' + card("Features", features) + card("Similar items", listing)
    return _html(request, page(f"Item {item_id}", body + "</div>"))


# -- try it --------------------------------------------------------------------------------
_FIELD_LABELS = {
    "min_price": "Min price",
    "max_price": "Max price",
    "lat": "Near latitude",
    "lon": "Near longitude",
    "km": "Within km",
}


def _number(params: dict[str, str], name: str) -> float | None:
    """The form's field ``name`` as a number (``None`` when blank); anything else is an
    error that names the field."""
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        number_ = float(value.replace(",", "."))
    except ValueError:
        number_ = float("nan")
    if not math.isfinite(number_):
        raise DataError(f"{_FIELD_LABELS[name]} must be a number, got {value!r}")
    return number_


def _form_features(served: ServedModel | None) -> dict[str, str | None]:
    """Which item feature each field of "Try it" reads, found in the catalogue's own kinds:
    ``category`` a categorical feature (one named like "category" first), ``style`` a
    multi-valued feature (or a categorical one named like "style"), ``price`` a numeric one
    (one named like "price" first), ``near`` whether items have coordinates."""
    features = served.model.item_features_ if served is not None else None
    kinds = dict(features.kinds) if features is not None else {}

    def first(kind: str, word: str = "") -> str | None:
        return next((n for n, k in kinds.items() if k == kind and word in n.lower()), None)

    category = first("categorical", "categor") or first("categorical", "type")
    style = first("multi") or first("categorical", "style") or first("categorical", "tag")
    return {
        "category": category or first("categorical"),
        "style": style,
        "price": first("numeric", "price") or first("numeric"),
        "near": "near" if {"latitude", "longitude"} <= set(kinds.values()) else None,
    }


def _try_spec(
    params: dict[str, str], fields: dict[str, str | None]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Free text, stated preferences and constraints from the form's fields."""
    query = params.get("q", "").strip()
    preferences: dict[str, Any] = {}
    filters: dict[str, Any] = {}
    category, style, price = fields["category"], fields["style"], fields["price"]
    if category and params.get("category", "").strip():
        filters[category] = params["category"].strip()
    if style and params.get("style", "").strip():
        preferences[style] = params["style"].strip()
    low, high = _number(params, "min_price"), _number(params, "max_price")
    if low is not None and high is not None and low > high:
        raise DataError(f"Min price ({number(low)}) is above Max price ({number(high)})")
    if price and (low is not None or high is not None):
        filters[price] = {"min": low, "max": high}
    lat, lon, km = (_number(params, name) for name in ("lat", "lon", "km"))
    if fields["near"] and lat is not None and lon is not None and km is not None:
        filters["near"] = {"lat": lat, "lon": lon, "km": km}
    return query, preferences, filters


def _try_results(state: ServiceState, params: dict[str, str]) -> str:
    served = state.served(None)
    if served is None:
        return '<p class="error">No model is active yet.</p>'
    try:
        query, preferences, filters = _try_spec(params, _form_features(served))
        constraint: Constraint | None = parse_constraints(filters) if filters else None
        ranked = served.recommend_anonymous(
            TOP_K,
            query=query or None,
            preferences=preferences or None,
            basket=[],
            constraint=constraint,
            exclude=sorted(state.catalogue.blocked),
        )
    except (DataError, ModelError) as error:
        return f'<p class="error" id="try-error">{text(error)}</p>'
    if not ranked.item_ids:
        return '<p class="muted" id="no-results">No item fits these constraints.</p>'
    reasons: dict[str, str] = {}
    model = served.model
    wanted: dict[str, Any] = {**preferences, **({"text": query} if query else {})}
    if model.abilities.queries and wanted:
        for item_id in ranked.item_ids:
            try:
                why = model.explain(item_id, query=wanted)
            except (DataError, ModelError):
                continue
            if why:
                reasons[item_id] = "matches " + "; ".join(str(part) for part in why[:3])
    note = f" (fallback: {text(ranked.fallback)})" if ranked.fallback else ""
    if ranked.note:
        note += f'<br><span id="try-note">{text(ranked.note)}</span>'
    rows = _item_rows(state, ranked, reasons)
    for row, item_id in zip(rows, ranked.item_ids, strict=True):
        fields = state.catalogue.features.get(item_id, {})
        price = fields.get("price")
        row.append(text(f"{price:.2f}" if isinstance(price, float) else price or ""))
    return f'<p class="muted">model {text(ranked.version)}{note}</p>' + table(
        ["#", "item", "title", score_header(ranked), "price"], rows, css_id="try-results"
    )


_FORM_FIELDS = (
    ("q", "Free text", "e.g. minimalist lantern"),
    ("style", "Preferred style / tag", "e.g. classic"),
    ("category", "Category", "e.g. outdoor"),
    ("min_price", "Min price", ""),
    ("max_price", "Max price", ""),
    ("lat", "Near latitude", "52.52"),
    ("lon", "Near longitude", "13.40"),
    ("km", "Within km", ""),
)


def _feature_note(feature: str | None) -> str:
    """The feature a field reads, shown next to its label ("near" needs no note)."""
    if feature is None or feature == "near":
        return ""
    return f' <span class="muted">({text(feature)})</span>'


@router.get("/try", response_class=HTMLResponse)
async def try_it(request: Request) -> Response:
    state = _state(request)
    params = {name: request.query_params.get(name, "")[:500] for name, _, _ in _FORM_FIELDS}
    features = _form_features(state.served(None))
    role = {"style": "style", "category": "category", "min_price": "price", "max_price": "price"}
    role.update(lat="near", lon="near", km="near")
    inputs = "".join(
        f"<label><span>{text(label)}{_feature_note(features.get(role.get(name, '')))}</span>"
        f'<input name="{name}" value="{text(params[name])}" placeholder="{text(hint)}"></label>'
        for name, label, hint in _FORM_FIELDS
        if name not in role or features.get(role[name])
    )
    form = (
        '<form class="try" method="get" action="/dashboard/try" '
        f'data-results="/dashboard/try/results">{inputs}<button type="submit">Show</button></form>'
    )
    results = await run_in_threadpool(_try_results, state, params)
    body = card("What are you looking for?", form) + '<div style="height:1rem"></div>'
    body += card("Results", f'<div id="results">{results}</div>')
    return _html(request, page("Try it", body, script="dashboard.js"))


@router.get("/try/results", response_class=HTMLResponse)
async def try_results(request: Request) -> Response:
    """The results part of "Try it", for the page's script."""
    state = _state(request)
    params = {name: request.query_params.get(name, "")[:500] for name, _, _ in _FORM_FIELDS}
    return HTMLResponse(await run_in_threadpool(_try_results, state, params))

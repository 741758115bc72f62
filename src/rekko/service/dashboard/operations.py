"""The dashboard pages that run the service: training jobs, model versions, online metrics.

Buttons post forms to the dashboard, which checks the admin key (see :mod:`.keys`) and then
calls the admin endpoints' own functions (``POST /training/jobs``, ``POST
/models/{version}/activate``, ``POST /models/rollback``), so they behave exactly as the API.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rekko.models.registry import available_models
from rekko.service.dashboard.charts import line_chart
from rekko.service.dashboard.html import card, metrics_list, number, page, table, text
from rekko.service.dashboard.keys import (
    check_key,
    check_same_origin,
    form_fields,
    has_key,
    require_read_key,
    set_key_cookie,
)
from rekko.service.errors import ApiError
from rekko.service.routes import models as admin
from rekko.service.schemas import TrainRequest
from rekko.service.state import ServiceState
from rekko.store import repository as repo

JOBS_SHOWN = 50
HOUR_S = 3600
REFRESH_S = 3

router = APIRouter(
    prefix="/dashboard", include_in_schema=False, dependencies=[Depends(require_read_key)]
)


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _detail(error: ApiError) -> str:
    """An API error's message as one line (422s list their fields)."""
    if isinstance(error.detail, list):
        return "; ".join(
            f"{part.get('field')}: {part.get('reason')}" if isinstance(part, dict) else str(part)
            for part in error.detail
        )
    return str(error.detail)


def _notice(message: str | None, *, error: bool = False) -> str:
    if not message:
        return ""
    css = "notice error" if error else "notice"
    return f'<p class="{css}" id="notice" role="status">{text(message)}</p>'


def _admin_note(request: Request) -> str:
    if has_key(request, "admin"):
        return ""
    return (
        '<p class="muted" id="admin-note">The buttons need the admin key: open '
        "<code>/dashboard?key=&lt;admin key&gt;</code> (it replaces the read key in this "
        "browser).</p>"
    )


async def _admin_form(request: Request) -> dict[str, str]:
    check_same_origin(request)
    check_key(request, "admin")
    return await form_fields(request)


# -- training jobs -------------------------------------------------------------------------
def _job_row(job: dict[str, Any]) -> list[str]:
    started, finished = job.get("started_at"), job.get("finished_at")
    took = f"{finished - started:,.1f} s" if started and finished else "-"
    log = job.get("error") or job.get("reason") or ""
    version = job.get("version") or "-"
    if job.get("activated"):
        version += " (activated)"
    return [
        f"<code>{text(job['job_id'])}</code>",
        f'<span class="status {text(job["status"])}">{text(job["status"])}</span>',
        text(job["algorithm"]),
        text(job["trigger"]),
        text(_when(job["created_at"])),
        text(took),
        f"<code>{text(version)}</code>",
        f'<div class="log">{text(log)}</div>' if log else '<span class="muted">-</span>',
        metrics_list(job.get("metrics")),
    ]


_NOTICES = {
    "started": "Training job {} started.",
    "activated": "Version {} is active now.",
    "rolled-back": "Rolled back: version {} is active now.",
}


def _notice_from(request: Request) -> str | None:
    kind, subject = request.query_params.get("done", ""), request.query_params.get("id", "")
    template = _NOTICES.get(kind)
    return template.format(subject[:128]) if template else None


def _jobs_page(
    request: Request, jobs: list[dict[str, Any]], message: str | None, error: bool
) -> str:
    state = _state(request)
    pending = [job for job in jobs if job["status"] in ("queued", "running")]
    finished = [job for job in jobs if job["status"] not in ("queued", "running")]
    headers = [
        "job", "status", "algorithm", "trigger", "created (UTC)", "took", "version",
        "log / reason", "holdout metrics",
    ]  # fmt: skip
    options = "".join(
        f'<option value="{text(name)}"{" selected" if name == state.settings.model else ""}>'
        f"{text(name)}</option>"
        for name in available_models()
    )
    form = (
        '<form class="actions" method="post" action="/dashboard/jobs/train">'
        f'<label>Algorithm <select name="algorithm">{options}</select></label>'
        '<label>Activate <select name="activate"><option value="auto">when it passes the '
        'quality gate</option><option value="never">never (keep as candidate)</option>'
        '</select></label><button type="submit" id="train-now">Train now</button></form>'
    )
    body = (
        _notice(message, error=error)
        + card("Train a new version", _admin_note(request) + form)
        + '<div class="gap"></div>'
        + card("Queued and running", table(headers, map(_job_row, pending), css_id="jobs-pending"))
        + '<div class="gap"></div>'
        + card(
            f"Finished (last {JOBS_SHOWN} jobs)",
            table(headers, map(_job_row, finished), css_id="jobs-finished"),
        )
    )
    return page("Training jobs", body, refresh_s=REFRESH_S if pending else None)


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_view(request: Request) -> Response:
    state = _state(request)
    jobs = await run_in_threadpool(repo.list_jobs, state.engine, JOBS_SHOWN)
    content = _jobs_page(request, jobs, _notice_from(request), False)
    return set_key_cookie(request, HTMLResponse(content))


@router.post("/jobs/train")
async def train_now(request: Request) -> Response:
    """``POST /training/jobs`` from the dashboard's button."""
    fields = await _admin_form(request)
    activate = fields.get("activate", "auto")
    try:
        if activate not in ("auto", "never"):
            raise ApiError(422, "invalid_request", f"activate is auto or never, not {activate!r}")
        body = TrainRequest.model_validate(
            {"algorithm": fields.get("algorithm") or None, "activate": activate}
        )
        started = await admin.start_training(request, body)
    except ApiError as error:
        state = _state(request)
        jobs = await run_in_threadpool(repo.list_jobs, state.engine, JOBS_SHOWN)
        content = _jobs_page(request, jobs, f"Not started: {_detail(error)}", True)
        return HTMLResponse(content, status_code=error.status)
    return RedirectResponse(
        f"/dashboard/jobs?done=started&id={quote(started.job_id)}", status_code=303
    )


# -- model versions ------------------------------------------------------------------------
def _versions_page(request: Request, message: str | None, error: bool) -> str:
    state = _state(request)
    pointer = state.registry.pointer()
    versions = list(reversed(state.registry.list()))
    target = state.registry.rollback_target()
    split = pointer.split
    rows = []
    for info in versions:
        is_active = info.version == pointer.active
        status = "active" if is_active else info.status
        if split is not None and split.version == info.version:
            status += f" (A/B: {split.share:.0%} of users)"
        button = (
            ""
            if is_active
            else f'<form method="post" action="/dashboard/versions/{quote(info.version)}/activate">'
            f'<button type="submit" class="small" data-activate="{text(info.version)}">'
            "Activate</button></form>"
        )
        rows.append(
            [
                f"<code>{text(info.version)}</code>",
                text(info.algorithm),
                f'<span class="status {text(status.split()[0])}">{text(status)}</span>',
                text(info.created_at),
                metrics_list(info.metrics),
                text(info.reason or ""),
                button,
            ]
        )
    rollback = (
        '<form class="actions" method="post" action="/dashboard/versions/rollback">'
        f'<button type="submit" id="rollback">Roll back to {text(target)}</button></form>'
        if target
        else '<p class="muted">No earlier active version to roll back to.</p>'
    )
    body = (
        _notice(message, error=error)
        + card(
            "Active version",
            f'<p>Serving <b id="active-version">{text(pointer.active or "none")}</b>.</p>'
            + _admin_note(request)
            + rollback,
        )
        + '<div class="gap"></div>'
        + card(
            "Versions (newest first)",
            table(
                [
                    "version",
                    "algorithm",
                    "status",
                    "created (UTC)",
                    "holdout metrics",
                    "reason",
                    "",
                ],
                rows,
                css_id="versions",
            ),
        )
    )
    return page("Model versions", body)


@router.get("/versions", response_class=HTMLResponse)
async def versions_view(request: Request) -> Response:
    content = await run_in_threadpool(_versions_page, request, _notice_from(request), False)
    return set_key_cookie(request, HTMLResponse(content))


async def _version_action(request: Request, action: str, version: str | None) -> Response:
    await _admin_form(request)
    try:
        if version is not None:
            pointer = await admin.activate(request, version)
        else:
            pointer = await admin.rollback(request)
    except ApiError as error:
        content = await run_in_threadpool(_versions_page, request, _detail(error), True)
        return HTMLResponse(content, status_code=error.status)
    active = quote(pointer.active or "")
    return RedirectResponse(f"/dashboard/versions?done={action}&id={active}", status_code=303)


@router.post("/versions/rollback")
async def rollback_now(request: Request) -> Response:
    """``POST /models/rollback`` from the dashboard's button."""
    return await _version_action(request, "rolled-back", None)


@router.post("/versions/{version}/activate")
async def activate_now(request: Request, version: str) -> Response:
    """``POST /models/{version}/activate`` from the dashboard's button."""
    return await _version_action(request, "activated", version)


# -- online metrics over time ----------------------------------------------------------------
def _hourly(state: ServiceState, hours: int) -> tuple[list[int], list[dict[str, Any]]]:
    state.flush_impressions()
    now_hour = int(time.time() // HOUR_S)
    periods = [(now_hour - back) * HOUR_S for back in range(hours - 1, -1, -1)]
    rows = repo.online_metrics(
        state.engine,
        since=periods[0],
        window_s=state.settings.followup_window_s,
        positive_events=state.settings.positive_events,
        bucket_s=HOUR_S,
    )
    return periods, rows


def _duration(seconds: float) -> str:
    if seconds >= 2 * HOUR_S:
        return f"{number(seconds / HOUR_S)} hours"
    return f"{number(seconds / 60)} minutes"


def _hour_label(period: int) -> str:
    return datetime.fromtimestamp(period, UTC).strftime("%m-%d %H:00")


@router.get("/online", response_class=HTMLResponse)
async def online_view(
    request: Request, hours: Annotated[int, Query(ge=2, le=24 * 14)] = 48
) -> Response:
    state = _state(request)
    periods, rows = await run_in_threadpool(_hourly, state, hours)
    versions = sorted({row["model_version"] for row in rows})
    cells = {(row["model_version"], row["period"]): row for row in rows}
    labels = [_hour_label(period) for period in periods]

    def series(measure: str, empty: float | None) -> dict[str, list[float | None]]:
        return {
            version: [
                float(cells[(version, p)][measure]) if (version, p) in cells else empty
                for p in periods
            ]
            for version in versions
        }

    if versions:
        charts = (
            line_chart(series("requests", 0.0), labels, title="Requests per hour",
                       css_id="chart-requests")
            + line_chart(series("impressions", 0.0), labels, title="Items shown per hour",
                         css_id="chart-impressions")
            + line_chart(series("follow_rate", None), labels, title="Follow-up rate per hour",
                         y_format=lambda value: f"{value:.1%}", css_id="chart-follow-rate")
        )  # fmt: skip
    else:
        charts = (
            f'<p class="muted" id="no-traffic">No list was served in the last {hours} hours.</p>'
        )
    listing = table(
        ["hour (UTC)", "version", "requests", "items shown", "followed", "follow-up rate"],
        (
            [
                text(_hour_label(row["period"])),
                text(row["model_version"]),
                number(row["requests"]),
                number(row["impressions"]),
                number(row["followed"]),
                f"{row['follow_rate']:.2%}",
            ]
            for row in sorted(rows, key=lambda r: (-r["period"], r["model_version"]))
        ),
        css_id="online-hourly",
    )
    window = state.settings.followup_window_s
    choices = " · ".join(
        f'<a href="/dashboard/online?hours={h}">{label}</a>'
        for h, label in ((24, "1 day"), (48, "2 days"), (168, "7 days"))
    )
    body = (
        f'<p class="muted">Per model version and hour (by the time a list was served): lists '
        f"served, items shown, and the share of shown items the same user then interacted "
        f"with positively within {_duration(window)}. Last {hours} hours: "
        f"{choices}</p>"
        + card("Over time", charts)
        + '<div class="gap"></div>'
        + card("By hour", listing)
    )
    return set_key_cookie(request, HTMLResponse(page("Online metrics", body)))

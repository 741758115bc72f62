"""Request and response bodies of the HTTP API (validated at the edge by pydantic).

Ids are strings in responses; requests may send numbers, which are read as strings.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from rekko.data.dataset import MAX_VALUE
from rekko.store.schema import ID_LENGTH

#: C0 and C1 control characters (NUL among them): no database stores them the same way.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    found = _CONTROL.search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters (U+{ord(found.group()):04X} at "
            f"position {found.start()})"
        )
    return value


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_LENGTH, strip_whitespace=True),
    AfterValidator(_printable),
]
#: An id in a URL path (``/users/{user_id}/...``).
PathId = Annotated[str, Path(min_length=1, max_length=ID_LENGTH), AfterValidator(_printable)]
#: The same id inside a :class:`Parameters` model (path ids are taken as given, not stripped).
PathIdField = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_LENGTH), AfterValidator(_printable)
]
_EVENT_TYPE = re.compile(r"\w(?:[\w.:/+ -]*[\w.:/+-])?")


def _event_type(value: str) -> str:
    if not _EVENT_TYPE.fullmatch(value):
        raise ValueError(
            "must be a name of letters, digits, spaces and _ . : / + - (starting with a letter "
            f"or digit), got {value!r}"
        )
    return value


#: An event type such as ``view`` or ``add-to-cart`` (surrounding spaces are dropped).
EventType = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_event_type),
]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
#: Epoch seconds above this are taken as milliseconds (as browsers and Retailrocket log them).
MILLISECONDS = 1e11
#: 2200-01-01 in unix seconds: later event times are taken for mistakes.
LATEST_TIME = 7_258_118_400


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class Problem(BaseModel):
    """One thing wrong with a request."""

    field: str = Field(
        description="Where: query.k, body.events.0.user_id, path.user_id, or request when no "
        "single field is to blame."
    )
    reason: str


class ErrorBody(BaseModel):
    """Every error the API answers: a short code and what was wrong (some add fields, such
    as the ``job_id`` a 409 conflicts with)."""

    error: str = Field(
        description="invalid_request, not_found, unauthorized, forbidden, conflict, "
        "payload_too_large, unavailable, overloaded, ..."
    )
    detail: str | list[Problem] = Field(
        description="A message, or for invalid_request the list of problems."
    )


class Parameters(BaseModel):
    """The path and query parameters of a GET endpoint, validated in one step (see
    :func:`rekko.service.routes.common.parameters`). ``path`` names the path parameters;
    unknown query parameters are ignored."""

    model_config = ConfigDict(extra="ignore")
    path: ClassVar[tuple[str, ...]] = ()


class ListQuery(Parameters):
    """The options of a GET list. Their limits (in characters, up to 12 bytes each once
    percent-encoded) keep the URL under the 64 KiB that the HTTP server reads: a longer one
    is refused before it reaches the app."""

    k: int = Field(10, ge=1, description="How many items (at most the server's max_k).")
    filters: str | None = Field(
        None, max_length=1_000, description='Constraints as JSON: {"price": {"max": 50}}'
    )
    exclude: str | None = Field(
        None,
        max_length=2_500,
        description="Comma-separated item ids to leave out (more in the body of POST "
        "/recommendations).",
    )
    fields: str | None = Field(
        None, max_length=256, description="Comma-separated item fields: title,price"
    )
    version: str | None = Field(None, max_length=128, description="A model version.")


class UserListQuery(ListQuery):
    path: ClassVar[tuple[str, ...]] = ("user_id",)
    user_id: PathIdField = Field(description="The user.")


class SimilarQuery(ListQuery):
    path: ClassVar[tuple[str, ...]] = ("item_id",)
    item_id: PathIdField = Field(description="The item.")


# -- recommendations -----------------------------------------------------------------------
class ListOptions(Body):
    k: int = Field(10, ge=1, description="How many items (at most the server's max_k).")
    filters: dict[str, Any] | None = Field(
        None,
        description='Knowledge constraints over item features, e.g. {"price": {"max": 50}, '
        '"category": ["books", "music"], "near": {"lat": 52.5, "lon": 13.4, "km": 10}}.',
    )
    exclude: list[Id] = Field(
        default_factory=list, max_length=10_000, description="Items never to return."
    )
    fields: list[FieldName] = Field(
        default_factory=list, max_length=64, description="Item fields to include (title...)."
    )
    version: str | None = Field(
        None, max_length=128, description="Serve from this model version instead of the active."
    )


class UserRecommendationRequest(ListOptions):
    user_id: Id


class AnonymousRecommendationRequest(ListOptions):
    user_id: Id | None = Field(
        None, description="An id for a new user (for A/B assignment and impression logs)."
    )
    query: str | None = Field(None, max_length=2_000, description="Free text.")
    preferences: dict[str, Any] | None = Field(
        None,
        description="Stated preferences, feature -> wanted value(s) "
        '(e.g. {"category": "books"}); soft for query-capable models, hard constraints '
        "otherwise.",
    )
    items: list[Id] = Field(
        default_factory=list, max_length=1_000, description="A basket of item ids."
    )


class RecommendedItem(BaseModel):
    item_id: str
    rank: int
    score: float
    fields: dict[str, Any] | None = None


class Recommendations(BaseModel):
    user_id: str | None
    model_version: str
    fallback: str | None = Field(
        description="null when the model ranked for this user itself; else history, basket, "
        "popularity, preferences, keywords or co-occurrence."
    )
    note: str | None = None
    request_id: str
    items: list[RecommendedItem]


class SimilarItems(BaseModel):
    item_id: str
    model_version: str
    fallback: str | None
    request_id: str
    items: list[RecommendedItem]


# -- feedback ------------------------------------------------------------------------------
class EventIn(Body):
    user_id: Id
    item_id: Id
    type: EventType = Field(
        "view", description="Event type: letters, digits, spaces and _ . : / + - (at most 64)."
    )
    value: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description=f"Strength (>= 0, at most {MAX_VALUE:g} after the event type's weight).",
    )
    time: float | datetime | None = Field(
        None,
        description="When it happened: unix seconds (milliseconds are recognised) or ISO "
        "8601; the time of receipt when left out.",
    )
    event_id: Id | None = Field(None, description="Client id: a replay is not counted twice.")

    @field_validator("value")
    @classmethod
    def _bounded_value(cls, value: float) -> float:
        if value > MAX_VALUE:
            raise ValueError(f"value must be at most {MAX_VALUE:g}")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _not_boolean(cls, value: Any) -> Any:
        # Read as a number, true would be a second after 1970: a mistake, not a time.
        if isinstance(value, bool):
            raise ValueError("time must be unix seconds, milliseconds or an ISO 8601 date")
        return value

    @field_validator("time")
    @classmethod
    def _plausible_time(cls, value: float | datetime | None) -> float | datetime | None:
        """From 1970 to 2200 (unix seconds, milliseconds or a date); others are mistakes."""
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            try:
                seconds = moment.timestamp()
            except (OverflowError, ValueError):
                seconds = math.nan
            if not 0 <= seconds <= LATEST_TIME:
                raise ValueError("time must be a date between 1970 and 2200")
        elif isinstance(value, float | int):
            seconds = value / 1000.0 if value > MILLISECONDS else value
            if not (math.isfinite(seconds) and 0 <= seconds <= LATEST_TIME):
                raise ValueError("time must be unix seconds or milliseconds between 1970 and 2200")
        return value

    def occurred_at(self, now: float) -> float:
        if self.time is None:
            return now
        if isinstance(self.time, datetime):
            moment = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
            return moment.timestamp()
        seconds = float(self.time)
        return seconds / 1000.0 if seconds > MILLISECONDS else seconds


class EventBatch(Body):
    events: list[EventIn] = Field(min_length=1)


class EventsAccepted(BaseModel):
    received: int
    stored: int
    duplicates: int
    applied: int = Field(description="Events folded into the served model(s) at once.")


# -- catalogue and users -------------------------------------------------------------------
class ItemIn(Body):
    item_id: Id
    features: dict[str, Any] = Field(default_factory=dict)
    hidden: bool | None = Field(None, description="Hide (true) or show (false); keep if null.")


class ItemBatch(Body):
    items: list[ItemIn] = Field(min_length=1)


class UserIn(Body):
    user_id: Id
    features: dict[str, Any] = Field(default_factory=dict)


class UserBatch(Body):
    users: list[UserIn] = Field(min_length=1)


class Upserted(BaseModel):
    inserted: int
    updated: int


class ItemOut(BaseModel):
    item_id: str
    status: Literal["active", "hidden", "deleted"]
    features: dict[str, Any]


class UserOut(BaseModel):
    user_id: str
    features: dict[str, Any]


# -- training and versions -----------------------------------------------------------------
class TrainRequest(Body):
    algorithm: str | None = Field(None, description="Registry name; the server's model if null.")
    params: dict[str, Any] | None = Field(None, description="Hyperparameters.")
    activate: Literal["auto", "never"] = Field(
        "auto", description="auto: activate when the quality gate passes; never: keep only."
    )


class PushRequest(Body):
    path: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="A model folder written by rekko train / tune, on the server's disk.",
    )
    activate: Literal["auto", "never"] = Field(
        "auto", description="auto: activate when the quality gate passes; never: keep only."
    )


class JobOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    job_id: str
    status: str
    trigger: str
    algorithm: str
    params: dict[str, Any]
    version: str | None = None
    activated: bool = False
    reason: str | None = None
    error: str | None = None
    metrics: dict[str, float] | None = None
    events_watermark: int | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class JobStarted(BaseModel):
    job_id: str
    status_url: str


class VersionOut(BaseModel):
    version: str
    algorithm: str
    params: dict[str, Any]
    created_at: str
    data_fingerprint: str | None
    events_watermark: int
    metrics: dict[str, float]
    baseline_metrics: dict[str, float] | None = None
    status: str
    reason: str | None
    active: bool
    split_share: float | None = Field(None, description="Share of users in an A/B split.")


class PointerOut(BaseModel):
    active: str | None
    history: list[str]
    split: dict[str, Any] | None


class SplitRequest(Body):
    version: str = Field(max_length=128)
    share: float = Field(ge=0.0, le=1.0)


class OnlineMetric(BaseModel):
    model_version: str
    requests: int
    impressions: int
    followed: int
    follow_rate: float


class OnlineMetrics(BaseModel):
    since: float
    window_s: float
    versions: list[OnlineMetric]


class Health(BaseModel):
    status: str
    model_version: str | None = None

"""Recommendations for known users, anonymous visitors, and similar items."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rekko.service.auth import require
from rekko.service.errors import error_responses
from rekko.service.routes.common import (
    blame_filters,
    check_k,
    constraints,
    documented,
    parameters,
    pick_model,
    ranked_response,
    service,
    split_list,
)
from rekko.service.schemas import (
    AnonymousRecommendationRequest,
    Recommendations,
    SimilarItems,
    SimilarQuery,
    UserListQuery,
    UserRecommendationRequest,
)

router = APIRouter(
    tags=["recommendations"],
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403),
)
#: Unknown item or version, bad options, no model yet.
ERRORS = error_responses(404, 422, 503)


async def _for_user(
    request: Request,
    user_id: str,
    k: int,
    filters: object,
    exclude: list[str],
    fields: list[str],
    version: str | None,
    where: str,
) -> Response:
    state = service(request)
    check_k(state, k, f"{where}.k")
    constraint = constraints(filters, f"{where}.filters")
    served = await pick_model(state, user_id, version, f"{where}.version")
    blocked = state.catalogue.blocked
    with blame_filters(constraint, f"{where}.filters"):
        ranked = served.recommend_user(
            user_id, k, constraint, [*exclude, *blocked] if blocked else exclude
        )
    return ranked_response(
        state, ranked, kind="user", fields=fields, head={"user_id": user_id}, log_user=user_id
    )


@router.get(
    "/users/{user_id}/recommendations",
    response_model=Recommendations,
    summary="Recommendations for a user",
    responses=ERRORS,
    openapi_extra=documented(UserListQuery),
)
async def recommend_for_user(request: Request) -> Response:
    """Top ``k`` items for a user; seen items, hidden items and ``exclude`` are left out.

    Users the model does not know get items like the ones they interacted with since the
    model was trained (``fallback: history``), or else the most popular items
    (``fallback: popularity``).
    """
    options = parameters(request, UserListQuery)
    return await _for_user(
        request,
        options.user_id,
        options.k,
        options.filters,
        split_list(options.exclude),
        split_list(options.fields),
        options.version,
        "query",
    )


@router.post(
    "/recommendations",
    response_model=Recommendations,
    summary="Recommendations (body)",
    responses=ERRORS,
)
async def recommend(request: Request, body: UserRecommendationRequest) -> Response:
    """The same as ``GET /users/{user_id}/recommendations`` with options in a JSON body."""
    return await _for_user(
        request,
        body.user_id,
        body.k,
        body.filters,
        body.exclude,
        body.fields,
        body.version,
        "body",
    )


@router.post(
    "/recommendations/anonymous",
    response_model=Recommendations,
    summary="Recommendations for a visitor without history",
    responses=ERRORS,
)
async def recommend_anonymous(request: Request, body: AnonymousRecommendationRequest) -> Response:
    """From free text (``query``), stated preferences (``preferences``) and/or a basket of
    items (``items``). A query-capable model (such as ``content``) reads text and
    preferences; otherwise preferences become constraints over popular items and text is
    matched against item features word by word."""
    state = service(request)
    check_k(state, body.k, "body.k")
    constraint = constraints(body.filters, "body.filters")
    served = await pick_model(state, body.user_id, body.version, "body.version")
    blocked = state.catalogue.blocked
    with blame_filters(constraint, "body.filters"):
        ranked = served.recommend_anonymous(
            body.k,
            query=body.query,
            preferences=body.preferences,
            basket=body.items,
            constraint=constraint,
            exclude=[*body.exclude, *blocked],
        )
    return ranked_response(
        state,
        ranked,
        kind="anonymous",
        fields=body.fields,
        head={"user_id": body.user_id},
        log_user=body.user_id,
    )


@router.get(
    "/items/{item_id}/similar",
    response_model=SimilarItems,
    summary="Similar items",
    responses=ERRORS,
    openapi_extra=documented(SimilarQuery),
)
async def similar_items(request: Request) -> Response:
    """Items most similar to ``item_id`` (the model's own similarity when it has one, else
    co-occurrence: people who interacted with it also interacted with...)."""
    options = parameters(request, SimilarQuery)
    state = service(request)
    check_k(state, options.k, "query.k")
    constraint = constraints(options.filters, "query.filters")
    served = await pick_model(state, None, options.version)
    with blame_filters(constraint, "query.filters"):
        ranked = served.similar(
            options.item_id,
            options.k,
            constraint,
            [*split_list(options.exclude), *state.catalogue.blocked],
        )
    return ranked_response(
        state,
        ranked,
        kind="similar",
        fields=split_list(options.fields),
        head={"item_id": options.item_id},
        log_user=None,
    )

"""The catalogue and users: upsert with features, hide, show, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from rekko.service.auth import require
from rekko.service.errors import ApiError, error_responses, invalid
from rekko.service.routes.common import service
from rekko.service.schemas import ItemBatch, ItemOut, PathId, Upserted, UserBatch, UserOut
from rekko.store import repository as repo

router = APIRouter(tags=["catalogue"], responses=error_responses(401, 403, 422))
admin = [Depends(require("admin"))]
read = [Depends(require("read"))]
#: Unknown item; hiding or showing a deleted one.
STATUS_ERRORS = error_responses(404, 409)


@router.put("/items", response_model=Upserted, dependencies=admin, summary="Upsert items")
async def upsert_items(request: Request, batch: ItemBatch) -> Upserted:
    """Create or replace items and their features (``hidden`` hides or shows them). Deleted
    items stay deleted."""
    state = service(request)
    if len(batch.items) > state.settings.max_batch:
        raise invalid("body.items", f"at most {state.settings.max_batch} items per call")
    records: list[tuple[str, dict[str, object], repo.ItemStatus | None]] = [
        (
            item.item_id,
            item.features,
            None if item.hidden is None else ("hidden" if item.hidden else "active"),
        )
        for item in batch.items
    ]
    inserted, updated = await run_in_threadpool(repo.upsert_items, state.engine, records)
    await run_in_threadpool(state.catalogue.refresh, state.engine)
    return Upserted(inserted=inserted, updated=updated)


@router.get(
    "/items/{item_id}",
    response_model=ItemOut,
    dependencies=read,
    summary="An item",
    responses=error_responses(404),
)
async def get_item(request: Request, item_id: PathId) -> ItemOut:
    state = service(request)
    record = await run_in_threadpool(repo.get_item, state.engine, item_id)
    if record is None:
        raise ApiError(404, "not_found", f"unknown item {item_id!r}")
    return ItemOut(item_id=record.item_id, status=record.status, features=record.features)


async def _set_status(request: Request, item_id: str, status: repo.ItemStatus) -> ItemOut:
    state = service(request)
    now = await run_in_threadpool(repo.set_item_status, state.engine, item_id, status)
    if now is None:
        raise ApiError(404, "not_found", f"unknown item {item_id!r}")
    if now != status:
        raise ApiError(409, "conflict", f"item {item_id!r} was deleted; deleted items stay deleted")
    await run_in_threadpool(state.catalogue.refresh, state.engine)
    return await get_item(request, item_id)


@router.post(
    "/items/{item_id}/hide",
    response_model=ItemOut,
    dependencies=admin,
    summary="Hide an item",
    responses=STATUS_ERRORS,
)
async def hide_item(request: Request, item_id: PathId) -> ItemOut:
    """Never recommend the item (until it is shown again); it stays in the catalogue."""
    return await _set_status(request, item_id, "hidden")


@router.post(
    "/items/{item_id}/show",
    response_model=ItemOut,
    dependencies=admin,
    summary="Show an item",
    responses=STATUS_ERRORS,
)
async def show_item(request: Request, item_id: PathId) -> ItemOut:
    return await _set_status(request, item_id, "active")


@router.delete(
    "/items/{item_id}",
    response_model=ItemOut,
    dependencies=admin,
    summary="Delete an item",
    responses=STATUS_ERRORS,
)
async def delete_item(request: Request, item_id: PathId) -> ItemOut:
    """Remove the item for good: never recommended again, left out of training, features
    dropped (its past events stay in the database). Hiding or showing it afterwards answers
    409."""
    return await _set_status(request, item_id, "deleted")


@router.put("/users", response_model=Upserted, dependencies=admin, summary="Upsert users")
async def upsert_users(request: Request, batch: UserBatch) -> Upserted:
    state = service(request)
    if len(batch.users) > state.settings.max_batch:
        raise invalid("body.users", f"at most {state.settings.max_batch} users per call")
    records = [(user.user_id, user.features) for user in batch.users]
    inserted, updated = await run_in_threadpool(repo.upsert_users, state.engine, records)
    return Upserted(inserted=inserted, updated=updated)


@router.get(
    "/users/{user_id}",
    response_model=UserOut,
    dependencies=read,
    summary="A user",
    responses=error_responses(404),
)
async def get_user(request: Request, user_id: PathId) -> UserOut:
    state = service(request)
    features = await run_in_threadpool(repo.get_user, state.engine, user_id)
    if features is None:
        raise ApiError(404, "not_found", f"unknown user {user_id!r}")
    return UserOut(user_id=user_id, features=features)

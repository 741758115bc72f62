"""The reference for the service's speed: a bare FastAPI app under uvicorn that answers
``GET /users/{user_id}/recommendations`` with a fixed body of the same shape as rekko's
(10 items), with uvicorn's options as ``rekko serve`` sets them. Nothing else runs in it.

    .venv/bin/python benchmarks/bare_app.py --port 8100 --workers 1
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response


def create_app() -> FastAPI:
    app = FastAPI()
    items = [
        {"item_id": str(1000 + rank), "rank": rank, "score": 1.0 / rank, "fields": None}
        for rank in range(1, 11)
    ]

    @app.get("/users/{user_id}/recommendations")
    async def recommendations(user_id: str, k: int = 10) -> Response:
        body = {
            "user_id": user_id,
            "model_version": "v1",
            "fallback": None,
            "request_id": secrets.token_hex(8),
            "items": items[:k],
            "note": None,
        }
        return Response(json.dumps(body), media_type="application/json")

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    options = {
        "host": "127.0.0.1",
        "port": args.port,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        "timeout_keep_alive": 15,
    }
    if args.workers == 1:
        uvicorn.run(create_app(), **options)
    else:
        folder = str(Path(__file__).resolve().parent)
        uvicorn.run(
            "bare_app:create_app", factory=True, workers=args.workers, app_dir=folder, **options
        )


if __name__ == "__main__":
    main()

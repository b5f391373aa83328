"""What every admin endpoint shares: its JSON error, its JSON answer, the proxy's parts (by key,
from the public app), the JSON body of a mutating call, and a route or request path named in one.

Owns: the admin API's error shape (`{"error": code, "message": ...}`) and input checks.
Must not: register endpoints (that is `admin`).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web

from proxy.core.routing import match_path, unsafe_target
from proxy.runtime import RouteState, Runtime

T = TypeVar("T")
PUBLIC_APP = web.AppKey("public_app", web.Application)  # the proxy this admin app reports on


class AdminError(Exception):
    """An admin-API error, rendered as JSON by the error middleware."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(doc, default=str),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def part(request: web.Request, key: web.AppKey[T]) -> T:
    """One part of the proxy this admin call is about (`proxy.parts`)."""
    return request.app[PUBLIC_APP][key]


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except RecursionError as exc:  # json nests by recursion: a deep body is refused, not a 500
        raise AdminError(400, "bad_json", "the body is nested too deeply") from exc
    except ValueError as exc:  # also UnicodeDecodeError
        raise AdminError(400, "bad_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise AdminError(400, "bad_json", "the body must be a JSON object")
    return doc


def route_named(runtime: Runtime, name: object) -> RouteState:
    rs = runtime.by_name.get(name) if isinstance(name, str) else None
    if rs is None:
        raise AdminError(404, "unknown_route", f"no route named {name!r}", routes=sorted(runtime.by_name))
    return rs


def request_path(rs: RouteState, key: object) -> tuple[str, str]:
    """A request path+query of this route, checked as the public listener would."""
    if not isinstance(key, str) or unsafe_target(key) is not None:
        raise AdminError(400, "bad_key", f"key must be a request path like /api/..., got {key!r}")
    path, _, query = key.partition("?")
    if match_path(rs.config.match, path.split("/")[1:]) is None:
        raise AdminError(
            400, "bad_key", f"{path} does not match route {rs.config.name} ({rs.config.match.text})"
        )
    return path, query

"""The Starlette application and its lifespan.

The lifespan is where flowcore comes alive: storage is opened (the embedded PostgreSQL when
no DATABASE_URL is set, the pool, migrations), the bus is built in the container, the demo
model is deployed on first start, and only then are requests served. On shutdown requests
are refused with "53" first, then everything is closed in reverse order.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal

import punq
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.codec import encode_failure, encode_json
from app.container import build_container, open_storage
from app.demo import deploy_demo
from app.endpoint import CommandEndpoint
from app.errors import MethodNotAllowed, RouteNotFound, failure_for
from app.lifecycle import Lifecycle, ReadinessProbe, Runtime
from app.middleware import BodyLimit, RequestLog, ServingGate, request_info
from handlers.bus import Bus
from infra.settings import Settings, load_settings

log = logging.getLogger("flowcore")

_ALWAYS_OPEN = frozenset({"/health"})


class _Environment(enum.Enum):
    READ = "read"


FROM_ENVIRONMENT = _Environment.READ


def _json(value: object, status: int) -> Response:
    return Response(encode_json(value), status_code=status, media_type="application/json")


async def _health(request: Request) -> Response:
    return _json({"status": "ok"}, 200)


def _ready_route(lifecycle: Lifecycle) -> Route:
    async def ready(request: Request) -> Response:
        try:
            ok = await lifecycle.current().ready()
        except Exception:
            log.warning("readiness check failed", exc_info=True)
            ok = False
        return _json({"status": "ready" if ok else "unavailable"}, 200 if ok else 503)

    return Route("/ready", ready, methods=["GET"])


async def _routing_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods get the envelope too, so every client parses one shape."""
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        edge: Exception = MethodNotAllowed(request.method, request.url.path)
    elif isinstance(exc, HTTPException) and exc.status_code == 404:
        edge = RouteNotFound(request.url.path)
    else:
        edge = exc
    request_id = request_info(request.scope).request_id
    failure = failure_for(edge, request_id)
    headers = dict(exc.headers) if isinstance(exc, HTTPException) and exc.headers else None
    return Response(
        encode_failure(failure, request_id), status_code=failure.http_status, media_type="application/json",
        headers=headers,
    )


def _resolve_or_none(container: punq.Container, key: object) -> object | None:
    try:
        return container.resolve(key)  # type: ignore[no-any-return]
    except punq.MissingDependencyError:
        return None


async def _start(
    container: punq.Container, settings: Settings, demo_tenant: str | None, stack: AsyncExitStack
) -> Runtime:
    # A container that already holds a Bus (tests, embedding) brings its own storage.
    if _resolve_or_none(container, Bus) is None:
        await open_storage(container, settings, stack)
    bus: Bus = container.resolve(Bus)
    ready: ReadinessProbe = container.resolve(ReadinessProbe)
    if demo_tenant:
        await deploy_demo(bus, demo_tenant)
    return Runtime(bus=bus, ready=ready)


def create_app(
    settings: Settings | None = None,
    *,
    container: punq.Container | None = None,
    demo_tenant: str | Literal[_Environment.READ] | None = FROM_ENVIRONMENT,
) -> Starlette:
    """Build the application; nothing is started until the server runs its lifespan.

    `settings` default to the environment (read here, at call time); `demo_tenant` defaults to
    the settings' (FLOWCORE_DEMO_TENANT).
    """
    resolved = settings if settings is not None else load_settings()
    box = container if container is not None else build_container(resolved)
    lifecycle = Lifecycle()
    endpoint = CommandEndpoint(lifecycle)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tenant = resolved.demo_tenant if demo_tenant is FROM_ENVIRONMENT else demo_tenant
        async with AsyncExitStack() as stack:
            lifecycle.serve(await _start(box, resolved, tenant, stack))
            log.info("ready to serve")
            try:
                yield
            finally:
                lifecycle.stop()
                log.info("shutting down")

    app = Starlette(
        routes=[
            Route("/api/core/cmd", endpoint, methods=["POST"]),
            Route("/health", _health, methods=["GET"]),
            _ready_route(lifecycle),
        ],
        middleware=[
            Middleware(RequestLog),
            Middleware(ServingGate, lifecycle=lifecycle, always_open=_ALWAYS_OPEN),
            Middleware(BodyLimit, limit=resolved.max_body_bytes),
        ],
        exception_handlers={HTTPException: _routing_error},
        lifespan=lifespan,
    )
    app.state.lifecycle = lifecycle  # the server closes the door with it when a stop signal arrives
    return app

"""The benchmarked apps, one module per framework, and a loader that skips what won't import."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class AppSpec:
    """One framework's app: a short name for tables and the module that builds `app`."""

    name: str
    title: str
    module: str

    @property
    def target(self) -> str:
        """The `module:attribute` string uvicorn takes."""
        return f"{self.module}:app"


APPS = (
    AppSpec("raw", "raw ASGI", "benchmarks.apps.raw_asgi"),
    AppSpec("starlette", "Starlette WebSocketEndpoint", "benchmarks.apps.starlette_endpoint"),
    AppSpec("fastapi", "FastAPI @app.websocket + Depends", "benchmarks.apps.fastapi_routes"),
    AppSpec("litestar", "Litestar WebsocketListener", "benchmarks.apps.litestar_listener"),
    AppSpec("lilya", "Lilya WebSocketController", "benchmarks.apps.lilya_controller"),
    AppSpec("channels", "Django Channels consumer", "benchmarks.apps.channels_consumer"),
    AppSpec("tether", "tether WebSocketController", "benchmarks.apps.tether_controllers"),
    AppSpec("tether_direct", "tether, served directly", "benchmarks.apps.tether_direct"),
)
APPS_BY_NAME = {spec.name: spec for spec in APPS}
BASELINE = "raw"


def load_app(spec: AppSpec) -> tuple[Any, str | None]:
    """Import one app module; return `(app, None)`, or `(None, reason)` when it can't be used."""
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:  # any failure means "skip this app", reported with its reason
        return None, f"{type(exc).__name__}: {exc}"
    return module.app, None

"""The same controller class mounts unchanged in Esmerald.

Esmerald's last release (3.9.4) runs only on Lilya < 0.24, and Ravyn needs
Lilya >= 0.27.1, so the two cannot share an environment: this file runs in
the `esmerald` entry of `.ci/matrix` (a venv of its own) and skips elsewhere.
In process with `tether.testing`, and end to end: `esmerald_app` under
uvicorn, with a real `websockets` client, through to Esmerald's lifespan
shutdown.
"""

import json
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from esmerald_env import skip_without_esmerald

skip_without_esmerald(module=True)

from asgi_server import AsgiServer  # noqa: E402
from esmerald import ChildEsmerald, Esmerald, Include  # noqa: E402
from host_scenarios import HERE, Chat, path_params_arrive, served_through_the_lifespan  # noqa: E402
from lilya.routing import WebSocketPath  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

pytestmark = pytest.mark.anyio


def esmerald_app() -> Any:
    return Esmerald(routes=[WebSocketPath("/ws/{room}", Chat)])


def esmerald_include_app() -> Any:
    # An Include of an ASGI app matches its path as a prefix, as Starlette's Mount does.
    return Esmerald(
        routes=[Include("/ws", app=ChildEsmerald(routes=[WebSocketPath("/{room}", Chat)]))]
    )


@pytest.mark.parametrize("make_app", [esmerald_app, esmerald_include_app])
async def test_path_params_arrive_through_esmerald_routing(make_app: Any) -> None:
    await path_params_arrive(make_app())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the websockets client is asyncio-only
@pytest.mark.parametrize("path", ["/ws/lobby", "/nested/lobby"])
async def test_esmerald_serves_the_controller_under_uvicorn_through_its_lifespan(
    tmp_path: Path, path: str
) -> None:
    await served_through_the_lifespan(tmp_path, "esmerald_app:app", path)


def _get(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_esmerald_refuses_a_handshake_without_a_required_value_and_keeps_serving(
    tmp_path: Path,
) -> None:
    log = tmp_path / "hosts.log"
    log.touch()
    with AsgiServer(
        "esmerald_app:app", app_dir=HERE, env={"TETHER_HOSTS_LOG": str(log)}, capture=True
    ) as server:
        with anyio.fail_after(15):
            with pytest.raises(InvalidStatus) as refused:
                async with ws_connect(server.url("/ws/lobby")):
                    pass  # pragma: no cover - the handshake is refused
            # Esmerald's own HTTP handlers still answer beside the controller.
            health = await anyio.to_thread.run_sync(
                _get, server.url("/health").replace("ws", "http", 1)
            )
    assert refused.value.response.status_code == 403
    assert health == (200, {"ok": True})
    assert not [
        line for line in log.read_text().splitlines() if "joined" in line or "on_disconnect" in line
    ]

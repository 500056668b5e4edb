"""tether.js in headless Chromium: requests, server calls, a reload, offline/online, a restart.

The page loads the module from `client_route()`; the server is uvicorn, and
a Python `Client` (bob) speaks in the room. Uses Debian's `chromium`
(`/usr/bin/chromium`, else `chromium` on PATH); skips only when there is none.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page, async_playwright

from tests.asgi_server import AsgiServer
from tether.client import Client

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
WAIT_MS = 15_000  # every Playwright wait is bounded by this
HERE = Path(__file__).parent
APP = "browser_app:app"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: /usr/bin/chromium missing"),
]

# Starts (or, after a reload, restarts) the page's client: it answers `confirm`
# calls, records `said` events, and keeps positions in sessionStorage.
START = """async () => {
  const client = window.client = new TetherClient(`ws://${location.host}/ws`, {
    backoff: { initial: 50, maximum: 200 }, storageKey: "tether-positions",
  });
  window.said = [];
  client.onCall("confirm", (question) => {
    if (question === "no") throw new RequestError("declined", "not today");
    return `yes to ${question}`;
  });
  client.on("said", (message) => window.said.push(message.text));
  await client.connect();
  return client.connects;
}"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def said(page: Page, texts: list[str]) -> None:
    """Wait (bounded) until the page's `said` events are exactly `texts`."""
    with anyio.move_on_after(WAIT_MS / 1000):
        while await page.evaluate("window.said") != texts:
            await anyio.sleep(0.02)
    assert await page.evaluate("window.said") == texts


async def test_the_browser_client_requests_recovers_and_reconnects() -> None:
    server = AsgiServer(APP, app_dir=HERE)
    port = server.port
    try:
        with anyio.fail_after(150):
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
                )
                try:
                    context = await browser.new_context()
                    context.set_default_timeout(WAIT_MS)
                    page = await context.new_page()
                    await page.goto(f"http://127.0.0.1:{port}/")
                    await page.wait_for_function("window.loaded === true")
                    assert await page.evaluate(START) == 1

                    # Requests, errors, timeouts and a call from the server.
                    assert await page.evaluate("client.request('add', {a: 1, b: 2})") == 3
                    assert await page.evaluate("client.request('ask', {q: 'tea'})") == "yes to tea"
                    failure = "(e) => [e.name, e.code, e.detail]"
                    assert await page.evaluate(f"client.request('fail').catch({failure})") == [
                        "CallError", "refused", "as asked",
                    ]  # fmt: skip
                    slow = "client.request('sleep', {seconds: 30}, {timeout: 100})"
                    assert await page.evaluate(f"{slow}.catch({failure})") == [
                        "CallError", "timeout", "no reply within 0.1s",
                    ]  # fmt: skip

                    # A room: what bob says arrives; a reloaded page recovers what it missed.
                    async with Client(server.url("/ws")) as bob:
                        joined = await page.evaluate("client.join('room:web')")
                        assert joined["recovered"] is False
                        await bob.request("say", {"group": "room:web", "text": "one"})
                        await said(page, ["one"])
                        await page.reload()
                        await page.wait_for_function("window.loaded === true")
                        for text in ("two", "three"):
                            await bob.request("say", {"group": "room:web", "text": text})
                        assert await page.evaluate(START) == 1
                        joined = await page.evaluate("client.join('room:web')")
                        assert (joined["recovered"], joined["replayed"]) == (True, 2)
                        await said(page, ["two", "three"])

                        # Offline: the client lets go; online: it is back at once, re-joined.
                        await context.set_offline(True)
                        await page.wait_for_function("client.state === 'offline'")
                        await bob.request("say", {"group": "room:web", "text": "four"})
                        await context.set_offline(False)
                        await page.wait_for_function("client.connects === 2")
                        await said(page, ["two", "three", "four"])
                        assert await page.evaluate("client.request('add', {a: 2, b: 2})") == 4

                    # The server stops and starts again on its port: the client comes back.
                    server.stop()
                    await page.wait_for_function("client.state !== 'open'")
                    server = AsgiServer(APP, app_dir=HERE, port=port)
                    await page.wait_for_function("client.connects === 3")
                    assert await page.evaluate("client.request('add', {a: 3, b: 3})") == 6
                    assert await page.evaluate("client.closeCode") in (1001, 1012)
                    # A final close (1008 here) is not retried.
                    await page.evaluate("client.send('close', {code: 1008})")
                    await page.wait_for_function("client.state === 'closed'")
                    assert await page.evaluate("[client.closeCode, client.connects]") == [1008, 3]
                finally:
                    await browser.close()
    finally:
        server.stop()

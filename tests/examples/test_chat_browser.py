"""The chat page in a real browser: headless Chromium, driven by Playwright.

Two tabs join one room under two nicknames and talk to each other through
the chat example served by uvicorn. Then a page from another origin (another
port on 127.0.0.1) tries to open the chat's WebSocket; the server refuses it.

Uses Debian's `chromium` (`/usr/bin/chromium`, else `chromium` on PATH);
skips only when there is none. Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Locator, Page, async_playwright

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000  # every Playwright wait is bounded by this

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: /usr/bin/chromium missing and no chromium on PATH"
)

# A page on another origin that tries to use the chat, and reports what happened.
FOREIGN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>another site</title></head>
<body>
<p id="result">trying…</p>
<script>
  const result = document.getElementById("result");
  const ws = new WebSocket("ws://127.0.0.1:CHAT_PORT/ws/lobby?nick=mallory");
  let opened = false;
  ws.onopen = () => {
    opened = true;
    ws.send(JSON.stringify({ type: "say", text: "sent from another site" }));
  };
  ws.onclose = (event) => {
    result.textContent = (opened ? "opened, then closed " : "refused, closed ") + event.code;
  };
</script>
</body></html>
"""


@pytest.fixture
def foreign_site() -> Iterator[Callable[[int], str]]:
    """Serve `FOREIGN_PAGE` from another origin; returns its URL for a given chat port."""
    chat_port: list[int] = []

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = FOREIGN_PAGE.replace("CHAT_PORT", str(chat_port[0])).encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)  # any free port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def url_for(port: int) -> str:
        chat_port.append(port)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    try:
        yield url_for
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def join(page: Page, url: str, nick: str, room: str = "lobby") -> None:
    """Open the chat page, type a nickname and a room, join, and wait until joined."""
    await page.goto(url)
    await page.fill("#nick", nick)
    await page.fill("#room", room)
    await page.press("#room", "Enter")
    await page.locator("#status", has_text=f"In #{room} as {nick}.").wait_for()


async def say(page: Page, text: str) -> None:
    """Type a message and press Enter."""
    await page.fill("#text", text)
    await page.press("#text", "Enter")


def said(page: Page, nick: str, text: str) -> Locator:
    """The log line showing that `nick` said `text`."""
    return page.locator("#log li.said", has_text=text).filter(has_text=nick)


@pytest.mark.anyio
async def test_two_tabs_chat_and_a_foreign_page_is_refused(
    serve_example: Callable[..., int],
    foreign_site: Callable[[int], str],
    tmp_path: Path,
):
    port = serve_example("chat")
    chat_url = f"http://127.0.0.1:{port}/"
    with anyio.fail_after(120):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
            )
            try:
                context = await browser.new_context(viewport={"width": 900, "height": 640})
                context.set_default_timeout(WAIT_MS)
                ada, bob = await context.new_page(), await context.new_page()

                await join(ada, chat_url, "ada")
                await join(bob, chat_url, "bob")
                await ada.locator("#log li.notice", has_text="bob joined #lobby").wait_for()
                # bob sees that ada was already there; ada sees bob arrive.
                await bob.locator("#present", has_text="Here: ada, bob").wait_for()
                await ada.locator("#present", has_text="Here: ada, bob").wait_for()

                await say(ada, "hello from ada")
                await said(bob, "ada", "hello from ada").wait_for()
                await say(bob, "hi ada, bob here")
                await said(ada, "bob", "hi ada, bob here").wait_for()
                await said(ada, "ada", "hello from ada").wait_for()  # her own line too
                assert await ada.input_value("#text") == ""  # Enter sent and cleared it
                await ada.screenshot(path=str(tmp_path / "chat.png"))

                # A page served from another origin cannot use the chat.
                elsewhere = await context.new_page()
                await elsewhere.goto(foreign_site(port))
                result = elsewhere.locator("#result", has_text="closed")
                await result.wait_for()
                assert await result.text_content() == "refused, closed 1006"

                # Nothing from it reached the room: a last line from bob arrives after it.
                await say(bob, "last line")
                await said(ada, "bob", "last line").wait_for()
                for page in (ada, bob):
                    log = await page.locator("#log").inner_text()
                    assert "mallory" not in log and "sent from another site" not in log
            finally:
                await browser.close()


@pytest.mark.anyio
async def test_with_history_the_page_reconnects_and_recovers_what_it_missed(
    serve_example: Callable[..., int], redis_server
):
    import json

    from websockets.asyncio.client import connect as ws_connect

    port = serve_example("chat", "--redis", redis_server.url, "--history")
    other = serve_example("chat", "--redis", redis_server.url, "--history")
    with anyio.fail_after(120):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
            )
            try:
                context = await browser.new_context()
                context.set_default_timeout(WAIT_MS)
                ada = await context.new_page()
                await join(ada, f"http://127.0.0.1:{port}/", "ada", "durable")
                bob_url = f"ws://127.0.0.1:{other}/ws/durable?nick=bob"
                async with ws_connect(bob_url, max_queue=None) as bob:
                    await ada.locator("#log li.notice", has_text="bob joined").wait_for()
                    await say(ada, "before the drop")
                    await said(ada, "ada", "before the drop").wait_for()

                    # The browser goes offline, so its client lets go of the connection;
                    # back online, it comes back from the last position it saw.
                    await context.set_offline(True)
                    await ada.locator("#status", has_text="reconnecting").wait_for()
                    for number in range(5):
                        await bob.send(json.dumps({"type": "say", "text": f"missed {number}"}))
                    await context.set_offline(False)
                    await ada.locator("#log li.notice", has_text="Caught up").wait_for()
                    await said(ada, "bob", "missed 4").wait_for()
                    await bob.send(json.dumps({"type": "say", "text": "live again"}))
                    await said(ada, "bob", "live again").wait_for()
                lines = await ada.locator("#log li.said").all_inner_texts()
                assert [line for line in lines if "missed" in line] == [
                    f"bobmissed {number}" for number in range(5)
                ]  # each once, in order, after what the page already showed
                assert lines[0] == "adabefore the drop"
            finally:
                await browser.close()

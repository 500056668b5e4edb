"""Guards: origins, permissions and subprotocols refuse or shape the handshake."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from starlette.exceptions import HTTPException

from tether import ConfigurationError, Header, Provide, Query, WebSocket, WebSocketController
from tether.controllers.guards import OriginPolicy
from tether.testing import HandshakeRejected, connect

pytestmark = pytest.mark.anyio


class Echo(WebSocketController):
    encoding = "text"

    async def on_receive(self, data: str) -> str:
        return data


class Browsers(Echo):
    allowed_origins = ["https://app.example.org", "https://*.example.com"]


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.org", "https://chat.example.com", "https://a.b.example.com", None],
)
async def test_allowed_origins_pass(origin: str | None) -> None:
    headers = {"origin": origin} if origin else {}
    async with connect(Browsers, "/", headers=headers) as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.net",
        "http://app.example.org",  # another scheme is another origin
        "https://example.com",  # the pattern covers subdomains only
        "https://app.example.org.evil.net",
        "null",
    ],
)
async def test_other_origins_are_refused_with_403(origin: str) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Browsers, "/", headers={"origin": origin}):
            pass
    assert refused.value.status == 403


async def test_subclasses_inherit_the_origin_check() -> None:
    class Child(Browsers):
        pass

    with pytest.raises(HandshakeRejected):
        async with connect(Child, "/", headers={"origin": "https://evil.example.net"}):
            pass


async def test_require_origin_refuses_non_browser_clients() -> None:
    class Strict(Echo):
        allowed_origins = ["*"]
        require_origin = True

    with pytest.raises(HandshakeRejected):
        async with connect(Strict, "/"):
            pass
    async with connect(Strict, "/", headers={"origin": "https://anything.test"}) as ws:
        await ws.send_text("ok")
        assert await ws.receive_text() == "ok"


def test_a_malformed_origin_fails_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Bad\.allowed_origins"):

        class Bad(Echo):
            allowed_origins = ["example.org"]


@pytest.mark.parametrize(
    "entry",
    [
        "example.org",  # no scheme
        "https://",  # no host
        "https://example.org/app",  # a path is not part of an origin
        "https://*example.org",  # '*' must be a whole label
        "https://a.*.example.org",
        "https://*.",
        "https://example.org:port",
        "https://*.[::1]",
    ],
)
def test_an_entry_that_is_not_an_origin_fails_when_the_class_is_defined(entry: str) -> None:
    with pytest.raises(ConfigurationError, match=r"Bad\.allowed_origins: .*like 'https://host'"):

        class Bad(Echo):
            allowed_origins = [entry]


def policy(*allowed: str) -> OriginPolicy:
    return OriginPolicy(allowed, require=False, owner="Test")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.example.org", True),
        ("https://a.b.example.org", True),  # any depth of subdomain
        ("https://A.Example.ORG", True),  # hosts are case-insensitive
        ("HTTPS://a.example.org", True),  # and so are schemes
        ("https://a.example.org:443", True),  # the default port, written out
        ("https://example.org", False),  # the bare domain is not a subdomain
        ("https://.example.org", False),  # an empty label
        ("https://a..example.org", False),
        ("https://evil.com/.example.org", False),  # a path that ends like the domain
        ("https://evil.com?.example.org", False),
        ("https://evil.com#.example.org", False),
        ("https://evil.com\\.example.org", False),
        ("https://user@a.example.org", False),  # user info is not part of an origin
        ("https://evilexample.org", False),  # a suffix that is not a whole label
        ("https://a.example.org.", False),  # a trailing dot is another origin
        ("https://a.example.org/", False),  # browsers send no trailing slash
        ("https://a.example.org:8443", False),  # another port
        ("https://a.example.org:", False),
        ("https://a.example.org:99999", False),
        ("http://a.example.org", False),  # another scheme
        ("wss://a.example.org", False),
        ("null", False),  # sandboxed frames, file: pages
        ("", False),
        ("https://a.example.org\n", False),
    ],
)
def test_a_subdomain_pattern_matches_whole_labels(origin: str, allowed: bool) -> None:
    assert policy("https://*.example.org").allows(origin) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.example.org:8443", True),
        ("https://a.b.example.org:8443", True),
        ("https://a.example.org", False),
        ("https://a.example.org:443", False),
        ("https://a.example.org:9443", False),
    ],
)
def test_a_port_in_the_pattern_must_be_the_port_of_the_origin(origin: str, allowed: bool) -> None:
    assert policy("https://*.example.org:8443").allows(origin) is allowed


@pytest.mark.parametrize(
    ("entry", "origin", "allowed"),
    [
        ("https://app.example.org", "https://APP.example.org", True),
        ("https://app.example.org/", "https://app.example.org", True),  # a listed '/' is ignored
        ("https://app.example.org", "https://app.example.org:443", True),
        ("https://app.example.org:443", "https://app.example.org", True),
        ("http://localhost:8000", "http://localhost:8000", True),
        ("http://localhost:8000", "http://localhost:8001", False),
        ("http://localhost:8000", "http://localhost", False),
        ("http://[::1]:8000", "http://[::1]:8000", True),
        ("https://app.example.org", "https://app.example.org.", False),
        ("https://app.example.org", "https://app.example.org.evil.com", False),
        ("https://app.example.org", "http://app.example.org", False),
    ],
)
def test_an_exact_origin_compares_scheme_host_and_port(
    entry: str, origin: str, allowed: bool
) -> None:
    assert policy(entry).allows(origin) is allowed


def test_a_host_that_only_lowercases_to_an_allowed_one_is_refused() -> None:
    # KELVIN SIGN lowercases to 'k'; browsers send hosts in ASCII (punycode).
    assert not policy("https://kite.example.org").allows("https://\u212aite.example.org")
    assert not policy("https://*.kite.org").allows("https://a.\u212aite.org")


def test_null_and_malformed_origins_pass_only_a_wildcard() -> None:
    assert policy("*").allows("null")
    assert policy("*").allows("not an origin")
    assert not policy("https://*.example.org", "https://example.org").allows("null")


def test_no_origin_header_passes_unless_one_is_required() -> None:
    assert policy("https://*.example.org").allows(None)
    required = OriginPolicy(["https://*.example.org"], require=True, owner="Test")
    assert not required.allows(None)


def is_staff(role: str = Header("guest", alias="x-role")) -> bool:
    return role == "staff"


async def has_token(token: str | None = Query(None)) -> bool:
    return token == "secret"


def teapot(websocket: WebSocket) -> bool:
    raise HTTPException(418, "short and stout")


class StaffOnly(Echo):
    permissions = [is_staff, has_token]


async def test_permissions_run_with_injection_before_on_connect() -> None:
    async with connect(StaffOnly, "/?token=secret", headers={"x-role": "staff"}) as ws:
        await ws.send_text("in")
        assert await ws.receive_text() == "in"


@pytest.mark.parametrize(
    ("path", "role"), [("/?token=secret", "guest"), ("/?token=nope", "staff"), ("/", "staff")]
)
async def test_a_falsy_permission_refuses_with_403(path: str, role: str) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(StaffOnly, path, headers={"x-role": role}):
            pass
    assert refused.value.status == 403


async def test_an_http_exception_carries_its_status_and_body() -> None:
    class Kettle(Echo):
        permissions = [teapot]

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Kettle, "/"):
            pass
    assert refused.value.status == 418
    assert refused.value.text == "short and stout"


async def test_permissions_share_connection_dependencies_with_hooks() -> None:
    made: list[str] = []

    def session_user() -> str:
        made.append("user")
        return "ada"

    def named(user_name: str = Provide(session_user)) -> bool:
        return user_name == "ada"

    class Shared(WebSocketController):
        permissions = [named]

        async def on_connect(self, websocket: WebSocket, user_name: str = Provide(session_user)):
            await websocket.accept()
            await websocket.send_text(user_name)

    async with connect(Shared, "/") as ws:
        assert await ws.receive_text() == "ada"
    assert made == ["user"]


class Chatty(Echo):
    subprotocols = ["chat.v2", "chat.v1"]

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(f"using {websocket.subprotocol}")


async def test_the_servers_preferred_subprotocol_wins() -> None:
    async with connect(Chatty, "/", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert await ws.receive_text() == "using chat.v2"


async def test_a_client_offering_no_subprotocol_is_accepted_without_one() -> None:
    async with connect(Chatty, "/") as ws:
        assert ws.subprotocol is None
        assert await ws.receive_text() == "using None"


async def test_an_offer_with_no_overlap_is_refused() -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Chatty, "/", subprotocols=["mqtt"]):
            pass
    assert refused.value.status == 403


async def test_auto_accept_uses_the_negotiated_subprotocol() -> None:
    class Quiet(Echo):
        subprotocols = ["a"]

    async with connect(Quiet, "/", subprotocols=["b", "a"]) as ws:
        assert ws.subprotocol == "a"


async def deny() -> bool:
    return False


class Checker:
    def __call__(self) -> Any:  # a plain def handing back a coroutine
        return deny()


@pytest.mark.parametrize(
    ("permission", "name"),
    [(functools.partial(deny), "deny"), (Checker(), "Checker")],
)
async def test_a_permission_returning_an_awaitable_of_false_refuses_naming_it(
    permission: Any, name: str
) -> None:
    class Guarded(Echo):
        permissions = [permission]

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Guarded, "/"):
            pass
    assert (refused.value.status, refused.value.reason) == (403, f"permission denied: {name}")

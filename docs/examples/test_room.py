import pytest
from room import app as room_app

from tether.testing import HandshakeRejected, ServerClosed, connect


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    # Every @pytest.mark.anyio test below runs twice: on asyncio, then on trio.
    return request.param


@pytest.fixture
def app():
    return room_app


@pytest.mark.anyio
async def test_replies_to_a_message(ws_connect):
    async with ws_connect("/ws/lobby?name=ada") as ws:
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"from": "ada@lobby", "text": "hi"}


@pytest.mark.anyio
async def test_closes_on_an_invalid_message():
    async with connect(room_app, "/ws/lobby") as ws:
        await ws.send_text("not json")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
    assert closed.value.code == 1007


@pytest.mark.anyio
async def test_unknown_path_is_refused():
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(room_app, "/nowhere"):
            pass
    assert refused.value.status == 403

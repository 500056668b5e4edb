"""FastAPI: `@app.websocket` routes, pydantic for the typed message, `Depends` for the graph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from benchmarks.workloads import (
    SETTINGS,
    Account,
    DbConnection,
    Settings,
    check_graph,
)

app = FastAPI()


class ChatModel(BaseModel):
    """The typed message as a pydantic model."""

    user: str
    text: str
    n: int


async def get_settings() -> Settings:
    """Provide the settings."""
    return SETTINGS


async def get_account(settings: Annotated[Settings, Depends(get_settings)]) -> Account:
    """Provide an account built from the settings."""
    return Account(settings)


async def get_db() -> AsyncIterator[DbConnection]:
    """Provide a database connection, closed after the endpoint returns."""
    connection = DbConnection()
    try:
        yield connection
    finally:
        connection.close()


@app.websocket("/echo")
async def text_echo(websocket: WebSocket) -> None:
    """Echo text frames."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@app.websocket("/json")
async def json_echo(websocket: WebSocket) -> None:
    """Echo JSON messages."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_json(await websocket.receive_json())
    except WebSocketDisconnect:
        pass


@app.websocket("/typed")
async def typed_echo(websocket: WebSocket) -> None:
    """Validate into the pydantic model, reply with two of its fields."""
    await websocket.accept()
    try:
        while True:
            message = ChatModel.model_validate_json(await websocket.receive_text())
            await websocket.send_json({"user": message.user, "n": message.n})
    except WebSocketDisconnect:
        pass


@app.websocket("/graph/{room}")
async def graph(
    websocket: WebSocket,
    room: str,
    token: Annotated[str, Query()],
    user_agent: Annotated[str, Header()],
    settings: Annotated[Settings, Depends(get_settings)],
    account: Annotated[Account, Depends(get_account)],
    db: Annotated[DbConnection, Depends(get_db)],
) -> None:
    """Accept once the graph is resolved; wait for the client to leave."""
    check_graph(room, token, user_agent, account, db)
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass


@app.websocket("/bare/{room}")
async def bare(websocket: WebSocket, room: str) -> None:
    """Accept with nothing to resolve; wait for the client to leave."""
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass

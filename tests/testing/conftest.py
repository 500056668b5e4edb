"""The `app` fixture that tether's pytest plugin (`ws_connect`, `app_client`) connects to."""

import pytest
from starlette.applications import Starlette
from testing_apps import make_starlette_app


@pytest.fixture
def app() -> Starlette:
    """The app the `ws_connect` and `app_client` fixtures connect to."""
    return make_starlette_app()

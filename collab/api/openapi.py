"""Serves the OpenAPI document of the public REST API at /api/v1/openapi.json.

The document is written by hand in ``openapi.yaml`` next to this module; a
test checks that it and the router describe the same routes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from collab.api.body import json_response
from collab.api.public import public

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


@functools.cache
def load_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.safe_load(handle)
    return spec


@public
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(load_spec())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_json)

"""/api/docs: Swagger UI served from this server, so the docs work on a gateway without internet.

The swagger-ui-bundle package ships Swagger UI 4.15, which reads OpenAPI 3.0 only, while FastAPI writes
3.1. The docs page therefore loads a 3.0 rendering of the same schema (nullable instead of a null type,
boolean exclusive bounds, enum instead of const); /api/v1/openapi.json stays the 3.1 original for clients.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dashboard.deps import templates

DOCS_SCHEMA = "/api/docs/openapi-3.0.json"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:  # 3.0 ignores siblings of $ref
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def as_openapi_30(node: Any) -> Any:
    """The 3.1 constructs FastAPI and pydantic emit, written the 3.0 way; everything else unchanged."""
    if isinstance(node, list):
        return [as_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_openapi_30(value) for key, value in node.items()}
    if isinstance(out.get("anyOf"), list) and {"type": "null"} in out["anyOf"]:
        rest = [s for s in out.pop("anyOf") if s != {"type": "null"}]
        out = {**out, **_nullable(rest[0])} if len(rest) == 1 else {**out, "anyOf": rest, "nullable": True}
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        out["type"] = types[0] if types else "string"
        if len(types) < len(node["type"]):
            out["nullable"] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[plain], out[bound] = out[bound], True
    if isinstance(out.get("examples"), list) and "schema" not in out and "content" not in out:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    return out


def install(app: FastAPI, title: str) -> None:
    def page(request: Request) -> Response:
        return templates.TemplateResponse(request, "api_docs.html", {"title": title, "openapi_url": DOCS_SCHEMA})

    def schema() -> JSONResponse:
        return JSONResponse({**as_openapi_30(app.openapi()), "openapi": "3.0.3"})

    app.add_api_route("/api/docs", page, include_in_schema=False)
    app.add_api_route(DOCS_SCHEMA, schema, include_in_schema=False)

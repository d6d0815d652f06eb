"""/docs: Swagger UI over /openapi.json with every asset served by the service itself (the
swagger-ui-bundle package), no CDN, and no inline script (the page's CSP allows none)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
});
"""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pax runner API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/pax-init.js"></script></body></html>
"""


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/docs/assets/{name}")
def asset(name: str) -> Response:
    if name == "pax-init.js":
        return Response(INIT, media_type="text/javascript")
    if name not in ASSETS:
        raise HTTPException(404, f"no asset {name}")
    from swagger_ui_bundle import swagger_ui_path

    return FileResponse(
        swagger_ui_path / name,
        media_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


def priced_gpus(app, pricing) -> None:
    """The OpenAPI document says which GPUs a worker may claim with: the price table's (a GPU
    without a price is refused, so the document names the ones that have one). With prices
    from SkyPilot's catalog, any name may have one: the field stays a free string."""
    if pricing.source != "table":
        return
    made = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = made()
            field = doc["components"]["schemas"]["ClaimRequest"]["properties"]["accelerator"]
            gpus = sorted(pricing.table["accelerators"])
            field.pop("anyOf", None)
            field["anyOf"] = [{"type": "string", "enum": gpus}, {"type": "null"}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi

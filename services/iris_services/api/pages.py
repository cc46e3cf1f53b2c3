"""Pages for people: the index at ``/``, offline API docs, and the alerts' runbooks.

``/docs`` and ``/redoc`` load Swagger UI and ReDoc from assets shipped in a package
(``fastapi-offline``), not from a CDN, so they work on a plane or in an air-gapped cluster.
``/runbooks`` renders ``runbooks.md`` (shipped beside this module); every alert's
``runbook_url`` points at one of its sections.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
RUNBOOKS = Path(__file__).with_name("runbooks.md")
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5}code{background:#f3f3f3;padding:0 .2em}"
)


def install(app: FastAPI, model_name: str, served_version: Callable[[], str | None]) -> None:
    """Add ``/``, ``/docs``, ``/redoc`` and ``/runbooks`` to ``app`` (built with
    ``docs_url=None, redoc_url=None``); ``served_version`` says which model version is served."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).with_name("static")
    app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        version = served_version()
        serving = f"version {html.escape(version)}" if version else "no model yet"
        links = [
            ("/docs", "API documentation (Swagger UI): try POST /predict"),
            ("/redoc", "API documentation (ReDoc)"),
            ("/model", "the served model (JSON)"),
            ("/metrics", "Prometheus metrics"),
            ("/openapi.json", "the OpenAPI schema"),
            ("/runbooks", "what to do when an alert fires"),
            ("/readyz", "readiness"),
        ]
        items = "".join(f'<li><a href="{href}">{href}</a> — {what}</li>' for href, what in links)
        return _page(
            f"{html.escape(app.title)}",
            f"<p>Serving <b>{serving}</b> of <code>{html.escape(model_name)}</code>.</p>"
            f"<ul>{items}</ul>"
            f"<p>Example: <code>curl -X POST {html.escape(str(request.base_url))}predict "
            "-H 'Content-Type: application/json' "
            """-d '{"features": [5.1, 3.5, 1.4, 0.2]}'</code></p>""",
        )

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/runbooks", include_in_schema=False)
    async def runbooks() -> HTMLResponse:
        return _page("Runbooks", runbooks_html())


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>"
    )


_ANCHOR = re.compile(r'^<a id="([a-z0-9-]+)"></a>$')


@cache
def runbooks_html() -> str:
    """``runbooks.md`` as HTML: its anchors kept, paragraphs, **bold** and `code`."""
    out = []
    for block in RUNBOOKS.read_text(encoding="utf-8").split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        anchor = _ANCHOR.match(lines[0])
        if anchor:
            out.append(f'<a id="{anchor.group(1)}"></a>')
            lines = lines[1:]
        text = html.escape(" ".join(lines))
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        if text.startswith("# "):
            continue  # the page has its own title
        out.append(f"<p>{text}</p>")
    return "\n".join(out)

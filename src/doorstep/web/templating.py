"""Server-rendered pages: one Jinja environment, autoescaped, with the shared layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

TEMPLATES_DIR = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    ctx = request.app.state.ctx
    context.setdefault("brand", ctx.settings.brand_name)
    context.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    context.setdefault("principal", getattr(request.state, "principal", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)

"""What every page shares: templates, rendering, sign-in, CSRF, roles for form posts.

Sign-in stores the token in an HttpOnly, SameSite=Strict cookie; the auth middleware
accepts it like a bearer header. Forms that change something carry a CSRF token: a
random value in a second cookie that the form must repeat (double submit), checked by
`Pages.check_form` together with the role the change needs.
"""

from __future__ import annotations

import datetime as dt
import hmac
import importlib
import math
import secrets
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from modelcycle.access.tokens import TokenService, role_allows
from modelcycle.core.errors import (
    AuthenticationError,
    ModelcycleError,
    NotFoundError,
    UsageError,
)
from modelcycle.server.auth import COOKIE

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

HERE = Path(__file__).parent
CSRF_COOKIE = "modelcycle_csrf"
NAV = (
    ("/", "Home"),
    ("/datasets", "Datasets"),
    ("/labeling", "Labeling"),
    ("/runs", "Runs"),
    ("/models", "Models"),
    ("/deployments", "Deployments"),
    ("/monitors", "Monitoring"),
    ("/audit", "Audit"),
)


def when(value: dt.datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}g}"
    return str(value)


def size(n: int | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(when=when, num=num, size=size)
    templates.env.globals["nav"] = NAV
    return templates


TEMPLATES = _templates()


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``template`` with the signed-in token, the CSRF token and the current path."""
    token = getattr(request.state, "token", None)
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"token": token, "csrf": csrf, "path": request.url.path, **context},
        status_code=status_code,
    )
    if request.cookies.get(CSRF_COOKIE) != csrf:
        response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/")
    return response


MAX_ID = 2**63 - 1


def number(text: str, what: str) -> int:
    """A positive whole number from a URL or a form (NotFoundError otherwise: ``²`` and
    numbers beyond 64 bits name nothing)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise NotFoundError(f"there is no {what} {text!r}", hint=f"a {what} is named by a number")
    return int(text)


def local_path(target: str) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirects:
    ``//host``, ``/\\host`` and absolute URLs leave the site)."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return "/"
    return target


def error_page(
    request: Request, error: ModelcycleError, status: int, **context: Any
) -> HTMLResponse:
    """A workspace error as a page (for browsers; API clients get JSON). ``context``:
    ``title`` (else the error's class) and ``back`` (href, label) besides Home."""
    return render(request, "error.html", status_code=status, error=error, **context)


def http_error_page(
    request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """The HTTP layer's own refusals as pages: a path that names no page (404), a method
    the page does not take (405, its ``Allow`` header kept), anything else with
    ``detail``."""
    path = request.url.path
    headers = dict(headers or {})
    back = None
    if status == 404:
        error: ModelcycleError = NotFoundError(
            f"there is no page at {path}",
            hint="check the address for a typo, or find the page from the menu above",
        )
        back = _section_of(path)
    elif status == 405:
        allow = next((v for k, v in headers.items() if k.lower() == "allow"), "")
        methods = sorted(m.strip() for m in allow.split(",") if m.strip())
        takes_get = "GET" in methods
        error = UsageError(
            f"{path} does not take {request.method} requests",
            hint=f"it takes only {', '.join(methods)}: "
            + ("open it as a link" if takes_get else "use the button on the page that leads here"),
        )
        back = (path, "the page") if takes_get else _section_of(path)
    else:
        error = ModelcycleError(detail)
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    response = error_page(request, error, status, title=title, back=back)
    response.headers.update(headers)
    return response


def _section_of(path: str) -> tuple[str, str] | None:
    """The menu entry (not Home) whose pages ``path`` is under, as a way back."""
    for href, label in NAV:
        if href != "/" and path.startswith(href + "/"):
            return href, label
    return None


class Pages:
    """Shared by page handlers: the workspace and the template renderer."""

    def __init__(self, ws: Callable[[], Workspace]) -> None:
        self.ws = ws
        self.templates = TEMPLATES

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        return render(request, template, status_code, **context)

    def check_form(self, request: Request, form: Mapping[str, Any], role: str) -> None:
        """Refuse a form post without the CSRF token, or by a role that may not."""
        sent = str(form.get("csrf", ""))
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent, expected):
            raise UsageError(
                "the form's CSRF token does not match", hint="reload the page and try again"
            )
        TokenService.authorize(request.state.token, role)

    def can(self, request: Request, role: str) -> bool:
        token = request.state.token
        return token is None or role_allows(token.role, role)

    def error(self, request: Request, error: ModelcycleError, status: int) -> HTMLResponse:
        return error_page(request, error, status)


def ui_router(ws: Callable[[], Workspace]) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    pages = Pages(ws)

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        next_path = local_path(request.query_params.get("next") or "/")
        return pages.render(request, "login.html", next_path=next_path)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        next_path = local_path(str(form.get("next") or "/"))
        try:
            row = ws().tokens.authenticate(token)
        except AuthenticationError as e:
            return pages.render(
                request, "login.html", status_code=401, error=e.message, next_path=next_path
            )
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(24), httponly=True, samesite="strict", path="/"
        )
        del row
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        pages.check_form(request, form, "reader")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    for section in sections():
        module = importlib.import_module(f"modelcycle.server.ui.{section}")
        module.register(router, pages)
    return router


def sections() -> list[str]:
    """The modules of this package that add pages (each defines ``register``)."""
    import pkgutil

    import modelcycle.server.ui as package

    return sorted(
        m.name
        for m in pkgutil.iter_modules(package.__path__)
        if m.name != "core" and not m.name.startswith("_")
    )

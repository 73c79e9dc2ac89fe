"""The team pages' application (Starlette through FastAPI, Jinja2 templates, served by uvicorn):
logging in and out, the checks every page and form goes through, and the chart library.

Every page needs a login; a session is a signed cookie (itsdangerous, through Starlette's
SessionMiddleware) holding the user's name and a CSRF token, nothing secret. Every form that
changes something posts that token back, and the change is refused (403, nothing done) when it
does not match or when the user's role may not make it (musket.web.users.PERMISSIONS). The
role is read from the database at each request, so a changed role counts at once.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from starlette.middleware.sessions import SessionMiddleware

from musket.web import users

HERE = Path(__file__).resolve().parent
SESSION_MAX_AGE_S = 8 * 3600  # one shift: then log in again
SECRET_ENV = "MUSKET_WEB_SECRET"


def plotly_js() -> Path:
    """plotly.min.js as the plotly package bundles it (served locally: no CDN)."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


class LoginRequired(Exception):
    """No logged-in user: the page sends the browser to the login form."""


class Forbidden(Exception):
    """The user's role may not make this change, or the form's CSRF token is wrong."""


def session_secret() -> str:
    """The key that signs session cookies: $MUSKET_WEB_SECRET, so that several copies (or a
    restart) accept each other's sessions; else a new random key (sessions end with the
    process)."""
    return os.environ.get(SECRET_ENV) or secrets.token_hex(32)


def create_app(engine: Engine, secret: str | None = None) -> FastAPI:
    app = FastAPI(title="musket fleet", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret or session_secret(),
                       session_cookie="musket_session", max_age=SESSION_MAX_AGE_S,
                       same_site="strict")
    app.state.engine = engine
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.templates.env.filters["mb"] = lambda n: "" if n is None else f"{n / 1e6:,.3f}"
    app.state.templates.env.filters["when"] = \
        lambda t: t.replace("T", " ")[:16] if t else ""

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return render(request, "refused.html", {"why": str(exc)}, status_code=403)

    @app.get("/static/plotly.min.js")
    def chart_library():
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    @app.get("/static/charts.js")
    def charts():
        return FileResponse(HERE / "templates" / "charts.js", media_type="text/javascript",
                            headers={"Cache-Control": "max-age=3600"})

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/"):  # noqa: A002 - the query's name
        return render(request, "login.html", {"next": _local(next), "failed": False})

    @app.post("/login")
    def login(request: Request, name: str = Form(...), password: str = Form(...),
              csrf: str = Form(""), next: str = Form("/")):  # noqa: A002
        check_csrf(request, csrf)
        user = users.login(app.state.engine, name, password)
        if user is None:
            return render(request, "login.html", {"next": _local(next), "failed": True},
                          status_code=401)
        request.session.clear()
        request.session.update(user=user.name, csrf=secrets.token_urlsafe(24))
        target = _local(next)
        return RedirectResponse(users.HOME[user.role] if target == "/" else target,
                                status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        check_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home(request: Request):
        return RedirectResponse(users.HOME[current_user(request).role], status_code=303)

    from musket.web import pages

    pages.register(app)
    return app


def _local(target: str) -> str:
    # Only a path of this site: a login link must not send the user elsewhere.
    return target if target.startswith("/") and not target.startswith("//") else "/"


def current_user(request: Request) -> users.WebUser:
    name = request.session.get("user")
    user = users.user(request.app.state.engine, name) if name else None
    if user is None:
        raise LoginRequired()
    return user


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(request: Request, token: str) -> None:
    expected = request.session.get("csrf", "")
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
        raise Forbidden("this form has expired or did not come from these pages; "
                        "reload the page and try again")


def require(request: Request, user: users.WebUser, change: str, csrf: str) -> None:
    """Refuses (403) a change the user's role may not make, or a form without the session's
    CSRF token."""
    check_csrf(request, csrf)
    if not user.may(change):
        raise Forbidden(f"the {user.role} role may not make this change ({change}); "
                        f"roles that may: {', '.join(sorted(users.PERMISSIONS[change]))}")


def render(request: Request, template: str, context: dict, status_code: int = 200
           ) -> Response:
    user = context.get("user")
    if user is None and request.session.get("user"):
        user = users.user(request.app.state.engine, request.session["user"])
    return request.app.state.templates.TemplateResponse(
        request, template, {**context, "user": user, "csrf": csrf_token(request)},
        status_code=status_code)

"""What every console page shares: the visit (request, session, caller, form), rendering with
the page frame, redirects, and how core errors are shown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dockyard.core.errors import AccessDeniedException, DockyardError
from dockyard.core.identity.caller import Caller
from dockyard.core.services import Services
from dockyard.doors.console.session import CSRF_FIELD, Session

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PREFIX = "/console"
MIB = 1024 * 1024
CONFIRMED_FIELD = "confirmed"
# A notice rides in the session cookie: keep it well inside a cookie's 4 KB.
MAX_NOTICE = 600

# Pages may hold a once-only secret or a CSRF token: never cached, never framed, no inline script.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def console_url(path: str = "", **query: str | list[str] | None) -> str:
    """/console/<path>?<query>, leaving out empty query values."""
    pairs = [
        (key, item)
        for key, value in query.items()
        if value is not None and value != ""
        for item in (value if isinstance(value, list) else [value])
    ]
    url = f"{PREFIX}/{path}" if path else f"{PREFIX}/"
    return f"{url}?{urlencode(pairs)}" if pairs else url


def repository_url(name: str, tab: str = "images", **query: str | list[str] | None) -> str:
    # "/-/" cannot occur in a repository name, so any name (slashes included) stays unambiguous.
    return console_url(f"repositories/{quote(name)}/-/{tab}", **query)


def user_url(name: str, action: str = "", **query: str | list[str] | None) -> str:
    suffix = f"/{action}" if action else ""
    return console_url(f"iam/users/{quote(name, safe='')}{suffix}", **query)


def format_time(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_mib(size: int | None) -> str:
    if size is None:
        return "—"
    return f"{size / MIB:.2f}"


def short_digest(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}…" if hex_part else digest


def make_environment() -> jinja2.Environment:
    # jinja2 is loaded with the first console page, not with the app: most workers never render one.
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=format_time, mib=format_mib, short_digest=short_digest)
    env.globals.update(console_url=console_url, repository_url=repository_url, user_url=user_url)
    return env


def error_status(exc: DockyardError) -> int:
    """The HTTP status a page answers with when the core refused: 403 for a denial, 404 for
    something that does not exist, otherwise the error's own."""
    if isinstance(exc, AccessDeniedException) or exc.code in ("AccessDenied", "AccessDeniedException"):
        return 403
    if "NotFound" in exc.code or exc.code == "NoSuchEntity":
        return 404
    return exc.status


@dataclass(frozen=True)
class ErrorView:
    """A refusal as AWS shows it: its error code and message."""

    code: str
    message: str

    @classmethod
    def of(cls, exc: DockyardError) -> ErrorView:
        return cls(exc.code, exc.message)


@dataclass
class Visit:
    """One request to a console page by a signed-in caller."""

    request: Request
    svc: Services
    session: Session
    caller: Caller
    env: jinja2.Environment
    form: FormData | None = None
    section: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # The notice the next page shows once (carried in the session cookie, see routes.py).
    flash: str | None = None

    @property
    def account_id(self) -> str:
        return self.caller.account_id

    def param(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def params(self, name: str) -> list[str]:
        return self.request.query_params.getlist(name)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def fields(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [value for value in self.form.getlist(name) if isinstance(value, str)]

    def checked(self, name: str) -> bool:
        return self.field(name) in ("on", "true", "1", "yes")

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return render_page(self.env, template, status, self.page_context(context))

    def page_context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "caller": self.caller,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.session.csrf_token,
            "section": self.section,
            "region": self.caller.region,
            "session_expires_at": self.session.expires_at,
            "error": None,
            "notice": self.session.notice,
            "field_errors": {},
            "status_code": 200,
            **context,
        }

    def refused(self, exc: DockyardError, template: str = "error.html", **context: Any) -> Response:
        """The page `template` with the core's refusal shown above it; when a page cannot be shown
        at all (what it shows does not exist, or the caller may not see it), a page that says so."""
        status = error_status(exc)
        if self.request.method == "GET" and status in (403, 404):
            return self.render("error.html", status, error=ErrorView.of(exc), status_code=status)
        return self.render(template, status, error=ErrorView.of(exc), **context)

    def redirect(self, url: str, notice: str | None = None) -> Response:
        """After a POST: to `url`, which shows `notice` once."""
        self.flash = notice if notice is None or len(notice) <= MAX_NOTICE else notice[: MAX_NOTICE - 1] + "…"
        return see_other(url)

    def confirmed(self) -> bool:
        """Whether the visitor confirmed this destructive action (the script's dialog, or the
        confirmation page when JavaScript is off)."""
        return self.field(CONFIRMED_FIELD) == "yes"

    def confirm(self, question: str, consequence: str, button: str, cancel_url: str) -> Response:
        """The confirmation step of a destructive action: the same POST again, confirmed."""
        skip = {CSRF_FIELD, CONFIRMED_FIELD}
        hidden = [(name, value) for name, value in (self.form or FormData()).multi_items() if name not in skip]
        return self.render(
            "confirm.html",
            question=question,
            consequence=consequence,
            button=button,
            cancel_url=cancel_url,
            action=self.request.url.path,
            hidden=[(name, value) for name, value in hidden if isinstance(value, str)],
        )


def render_page(env: jinja2.Environment, template: str, status: int, context: Mapping[str, Any]) -> Response:
    html = env.get_template(template).render(**context)
    return HTMLResponse(html, status, headers=SECURITY_HEADERS)


def see_other(url: str) -> Response:
    """After a POST: 303, so a reload does not repeat it."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console page of this server, never another site."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return console_url("repositories")


Handler = Callable[[Visit], Awaitable[Response]]


@dataclass(frozen=True)
class Page:
    """A console page: its path under /console, handler, methods and navigation section."""

    path: str
    handler: Handler
    methods: tuple[str, ...] = ("GET",)
    section: str = ""

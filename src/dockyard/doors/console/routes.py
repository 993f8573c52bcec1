"""The console door: HTML pages under /console, signed in with an access key pair.

Like every door it only parses, authenticates, calls the core and renders: each page acts as
the signed-in principal, so the policy engine decides what it may do, and a refusal shows AWS's
own error (AccessDeniedException with its message)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from dockyard.audit.console import report_sign_in
from dockyard.core.errors import DockyardError
from dockyard.core.identity import console_sessions
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.principals import CredentialsRejected, resolve_credentials
from dockyard.core.services import Services
from dockyard.doors.console import iam, images, permissions, registry, repositories, repository, settings, trail
from dockyard.doors.console import iam_groups as iam_group_pages
from dockyard.doors.console import iam_policies as iam_policy_pages
from dockyard.doors.console import iam_roles as iam_role_pages
from dockyard.doors.console import image as image_page
from dockyard.doors.console import lifecycle as lifecycle_pages
from dockyard.doors.console.session import (
    COOKIE_NAME,
    CSRF_FIELD,
    DEFAULT_LIFETIME,
    Session,
    SessionCodec,
    anonymous_session,
    session_key,
    signed_in_session,
)
from dockyard.doors.console.web import (
    PREFIX,
    STATIC_DIR,
    ErrorView,
    Page,
    Visit,
    console_url,
    make_environment,
    render_page,
    safe_next,
    see_other,
)
from dockyard.doors.origin import with_origin

if TYPE_CHECKING:
    import jinja2

FAVICON = STATIC_DIR / "favicon.ico"
INVALID_KEY = "The access key ID or secret access key is not valid, or the key is inactive."
FORM_EXPIRED = "This form has expired. Reload the page and try again."
# Forms here are small: anything larger is not one of ours.
MAX_FORM_BYTES = 1024 * 1024


async def _site_root(request: Request) -> Response:
    return RedirectResponse(console_url(), status_code=302)


async def _favicon(request: Request) -> Response:
    return FileResponse(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})


async def not_found(visit: Visit) -> Response:
    return visit.render("error.html", 404, status_code=404)


class ConsoleDoor:
    def __init__(self, svc: Services, lifetime: float = DEFAULT_LIFETIME) -> None:
        self.svc = svc
        self.lifetime = lifetime

    @cached_property
    def env(self) -> jinja2.Environment:
        # Built (and jinja2 imported) with the first page rendered: most workers never render one.
        return make_environment()

    @property
    def codec(self) -> SessionCodec:
        # The token secret is loaded at start-up (lifespan), after the door is built.
        return SessionCodec(session_key(self.svc.token_secret), self.lifetime)

    def mount(self) -> Mount:
        pages = [
            *repositories.PAGES,
            *images.PAGES,
            *image_page.PAGES,
            *lifecycle_pages.PAGES,
            *permissions.PAGES,
            *settings.PAGES,
            *repository.PAGES,
            *iam.PAGES,
            *registry.PAGES,
            *trail.PAGES,
            *iam_group_pages.PAGES,
            *iam_role_pages.PAGES,
            *iam_policy_pages.PAGES,
            # Last: any other console address is a page that does not exist.
            Page("/{rest:path}", not_found),
        ]
        routes: list[BaseRoute] = [
            Route("/", self.home, methods=["GET"]),
            Route("/sign-in", self.sign_in, methods=["GET", "POST"]),
            Route("/sign-out", self.sign_out, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            *(Route(page.path, self._endpoint(page), methods=list(page.methods)) for page in pages),
        ]
        # Pages are compressed; only the console is wrapped, so registry blobs never are.
        return Mount(PREFIX, app=GZipMiddleware(Router(routes), minimum_size=500))

    @staticmethod
    def site_routes() -> list[BaseRoute]:
        """The site root's GET (a browser's way in: the console; `POST /` is the AWS API) and
        the favicon browsers ask for."""
        return [
            Route("/", _site_root, methods=["GET"]),
            Route("/favicon.ico", _favicon, methods=["GET"]),
        ]

    # --- sessions -----------------------------------------------------------------------------

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.svc.settings.scheme == "https"

    async def _caller(self, request: Request, session: Session) -> Caller | None:
        """The principal the session's access key stands for now, or None when the key no
        longer works (deactivated, deleted, or its user gone)."""
        assert session.access_key_id is not None
        if await console_sessions.session_ended(self.svc, session.session_id):
            return None
        try:
            resolved = await resolve_credentials(self.svc, session.access_key_id, None, self.svc.settings.region)
        except CredentialsRejected:
            return None
        return with_origin(resolved.caller, request)

    def _to_sign_in(self, request: Request, reason: str | None = None) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = see_other(console_url("sign-in", next=target if request.method == "GET" else None, reason=reason))
        self.codec.clear(response, secure=self._secure(request))
        return response

    def _endpoint(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            response = await answer(request)
            # The page's own time, without the network: what bench/console.py reports.
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response

        async def answer(request: Request) -> Response:
            session = self.codec.read(request)
            if session is None or not session.signed_in:
                return self._to_sign_in(request, "expired" if COOKIE_NAME in request.cookies else None)
            caller = await self._caller(request, session)
            if caller is None:
                return self._to_sign_in(request, "revoked")
            visit = Visit(request, self.svc, session, caller, self.env, section=page.section)
            if request.method == "POST":
                visit.form = await self._form(request)
                if visit.form is None or not session.csrf_matches(visit.field(CSRF_FIELD)):
                    return visit.render("error.html", 403, message=FORM_EXPIRED)
            try:
                response = await page.handler(visit)
            except DockyardError as exc:
                response = visit.refused(exc)
            self._carry_notice(request, session, visit, response)
            return response

        return endpoint

    def _carry_notice(self, request: Request, session: Session, visit: Visit, response: Response) -> None:
        """Store the notice a redirect carries, and forget one as soon as a page has shown it."""
        if visit.flash is not None:
            self.codec.write(response, replace(session, notice=visit.flash), secure=self._secure(request))
        elif session.notice is not None and not 300 <= response.status_code < 400:
            self.codec.write(response, replace(session, notice=None), secure=self._secure(request))

    async def _form(self, request: Request) -> Any:
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return None
        return await request.form(max_files=0, max_fields=5000)

    # --- pages without a signed-in caller --------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return see_other(console_url("repositories"))

    def _sign_in_page(self, request: Request, session: Session, status: int = 200, **context: Any) -> Response:
        page_context = {
            "caller": None,
            "csrf_field": CSRF_FIELD,
            "csrf_token": session.csrf_token,
            "section": "",
            "error": None,
            "notice": None,
            "next": safe_next(request.query_params.get("next")),
            "access_key_id": "",
            "reason": request.query_params.get("reason"),
            **context,
        }
        response = render_page(self.env, "sign_in.html", status, page_context)
        self.codec.write(response, session, secure=self._secure(request))
        return response

    async def sign_in(self, request: Request) -> Response:
        session = self.codec.read(request)
        if request.method == "GET":
            if session is not None and session.signed_in and await self._caller(request, session) is not None:
                return see_other(safe_next(request.query_params.get("next")))
            reusable = session is not None and not session.signed_in
            return self._sign_in_page(request, session if reusable and session else anonymous_session())
        form = await self._form(request)
        if session is None or form is None or not session.csrf_matches(form.get(CSRF_FIELD)):
            return self._sign_in_page(request, anonymous_session(), 403, error=ErrorView("", FORM_EXPIRED))
        key_id = str(form.get("access_key_id") or "").strip()
        secret = str(form.get("secret_access_key") or "").strip()
        next_url = safe_next(str(form.get("next") or ""))
        matched = await self._key_matches(key_id, secret)
        if key_id:
            await report_sign_in(self.svc, request, key_id, success=matched)
        if not matched:
            # The secret is never written back into the form.
            fresh = anonymous_session()
            error = ErrorView("", INVALID_KEY)
            return self._sign_in_page(request, fresh, 401, error=error, access_key_id=key_id, next=next_url)
        response = see_other(next_url)
        self.codec.write(response, signed_in_session(key_id, self.lifetime), secure=self._secure(request))
        return response

    async def _key_matches(self, key_id: str, secret: str) -> bool:
        """Whether `secret` is the secret of long-term access key `key_id`, and the key works."""
        if not key_id or not secret:
            return False
        try:
            resolved = await resolve_credentials(self.svc, key_id, None, self.svc.settings.region)
        except CredentialsRejected:
            return False
        return hmac.compare_digest(resolved.secret_access_key.encode(), secret.encode())

    async def sign_out(self, request: Request) -> Response:
        session = self.codec.read(request)
        form = await self._form(request)
        if session is None or form is None or not session.csrf_matches(form.get(CSRF_FIELD)):
            return see_other(console_url("sign-in"))
        if session.signed_in:
            await console_sessions.end_session(self.svc, session.session_id, session.expires_at)
        response = see_other(console_url("sign-in", reason="signed-out"))
        self.codec.clear(response, secure=self._secure(request))
        return response

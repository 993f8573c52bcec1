"""The console's session: a signed cookie naming the signed-in access key, with a CSRF token.

The cookie holds no secret: only the access key id, the CSRF token and the session's times,
signed (not encrypted) with a key derived from the server's shared token secret, so any node
can read it. Who the key stands for, and whether it still works, is looked up afresh on every
request, so a deactivated key or a deleted user is signed out at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE_NAME = "dockyard_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
# How long a sign-in lasts, whatever happens meanwhile (the AWS console's default is 12 hours).
DEFAULT_LIFETIME = 12 * 3600.0
# A session that has not signed in yet only carries the sign-in form's CSRF token.
ANONYMOUS_LIFETIME = 3600.0
_SALT = "dockyard.console.session"


@dataclass(frozen=True)
class Session:
    csrf_token: str
    issued_at: float
    expires_at: float
    # None until the visitor signs in.
    access_key_id: str | None = None
    # What the last action did, shown once on the next page (never taken from the URL, so no
    # link can make the console claim something happened).
    notice: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.access_key_id is not None

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    @property
    def session_id(self) -> str:
        """Names the session without revealing its CSRF token (which is unique to it)."""
        return hashlib.sha256(self.csrf_token.encode()).hexdigest()

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), str(token).encode())


def anonymous_session(now: float | None = None) -> Session:
    moment = time.time() if now is None else now
    return Session(csrf_token=secrets.token_urlsafe(32), issued_at=moment, expires_at=moment + ANONYMOUS_LIFETIME)


def signed_in_session(access_key_id: str, lifetime: float, now: float | None = None) -> Session:
    """A fresh session for a sign-in: a new CSRF token too, so no token seen before sign-in
    (session fixation) carries over."""
    moment = time.time() if now is None else now
    return replace(anonymous_session(moment), access_key_id=access_key_id, expires_at=moment + lifetime)


def session_key(token_secret: bytes) -> bytes:
    """The signing key, derived from the token secret every node shares; a separate key so a
    console cookie can never pass for anything else the token secret signs."""
    return hmac.new(token_secret, b"dockyard console session", hashlib.sha256).digest()


@dataclass(frozen=True)
class SessionCodec:
    """Reads and writes the session cookie."""

    key: bytes
    lifetime: float = DEFAULT_LIFETIME

    @property
    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.key, salt=_SALT)

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps(
            {
                "c": session.csrf_token,
                "i": session.issued_at,
                "e": session.expires_at,
                "k": session.access_key_id,
                "n": session.notice,
            }
        )

    def loads(self, value: str | None, now: float | None = None) -> Session | None:
        """The session `value` carries, or None when it is missing, forged, malformed or expired."""
        if not value:
            return None
        moment = time.time() if now is None else now
        try:
            # max_age bounds what a stolen cookie is good for even if its own expiry were wrong.
            data = self._serializer.loads(value, max_age=int(self.lifetime) + 60)
            session = Session(
                csrf_token=str(data["c"]),
                issued_at=float(data["i"]),
                expires_at=float(data["e"]),
                access_key_id=None if data["k"] is None else str(data["k"]),
                notice=None if data.get("n") is None else str(data["n"]),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if session.expired(moment) or session.issued_at > moment + 60:
            return None
        return session

    def read(self, request: Request) -> Session | None:
        return self.loads(request.cookies.get(COOKIE_NAME))

    def write(self, response: Response, session: Session, *, secure: bool, now: float | None = None) -> None:
        """Set the cookie: HttpOnly (no script reads it), SameSite=Lax (no cross-site POST
        carries it) and, over TLS, Secure."""
        moment = time.time() if now is None else now
        response.set_cookie(
            COOKIE_NAME,
            self.dumps(session),
            max_age=max(0, round(session.expires_at - moment)),
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=secure,
        )

    def clear(self, response: Response, *, secure: bool) -> None:
        response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)

"""Console sessions ended by signing out.

A console session is a signed cookie, so any node can read it without a lookup; signing out
must therefore be remembered where every node sees it, or a copy of the cookie would stay good
until it expires."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from dockyard.core.services import Services, now
from dockyard.store import schema

_sign_outs = schema.console_sign_outs


async def end_session(svc: Services, session_id: str, expires_at: float) -> None:
    async with svc.db.write() as conn:
        # Rows of sessions that have expired anyway are no longer needed.
        await conn.execute(delete(_sign_outs).where(_sign_outs.c.expires_at < now()))
        found = await conn.execute(select(_sign_outs.c.session_id).where(_sign_outs.c.session_id == session_id))
        if found.first() is None:
            await conn.execute(insert(_sign_outs).values(session_id=session_id, expires_at=expires_at))


async def session_ended(svc: Services, session_id: str) -> bool:
    async with svc.db.read() as conn:
        found = await conn.execute(select(_sign_outs.c.session_id).where(_sign_outs.c.session_id == session_id))
        return found.first() is not None

"""Request ids: every HTTP exchange has one, sent back in `x-request-id` and written in its
server errors' messages and in the log lines about it, so that what a client reports and what
operators read meet.

Ray Serve's proxy gives each request an `x-request-id` header (the client's own, if it sent
one) and sends it back itself; without Serve in front, the id is made and sent back here.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import Scope

REQUEST_ID_HEADER = b"x-request-id"
# What a client may choose: an id goes into log lines and error messages as it is.
_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def assign_request_id(scope: Scope) -> bool:
    """Give the exchange its id (kept in the scope's state); True when it was made here and the
    response must carry it."""
    given = dict(scope.get("headers", ())).get(REQUEST_ID_HEADER, b"").decode("latin-1")
    made = not _SAFE.fullmatch(given)
    scope.setdefault("state", {})["request_id"] = uuid.uuid4().hex if made else given
    return made


def request_id_of(scope: Scope) -> str | None:
    """The exchange's id, once `assign_request_id` has run."""
    return scope.get("state", {}).get("request_id")

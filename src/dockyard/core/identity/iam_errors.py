"""Errors of the IAM and STS APIs, with the codes and HTTP statuses of botocore's iam/sts models.

They are DockyardErrors, so any door can render them; the identity door renders them as AWS
Query XML. (An AccessDeniedException raised by `authorize` is rendered there as AccessDenied.)"""

from __future__ import annotations

from dockyard.core.errors import DockyardError


def _error(code: str, status: int) -> type[DockyardError]:
    return type(code, (DockyardError,), {"code": code, "status": status})


NoSuchEntity = _error("NoSuchEntity", 404)
EntityAlreadyExists = _error("EntityAlreadyExists", 409)
DeleteConflict = _error("DeleteConflict", 409)
LimitExceeded = _error("LimitExceeded", 409)
MalformedPolicyDocument = _error("MalformedPolicyDocument", 400)
InvalidInput = _error("InvalidInput", 400)
ValidationError = _error("ValidationError", 400)
AccessDenied = _error("AccessDenied", 403)

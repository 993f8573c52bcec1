"""Policy text as ECR hands it back.

ECR stores a repository policy as a JSON tree and returns it (GetRepositoryPolicy,
SetRepositoryPolicy, GetRegistryPolicy, ...) re-serialised by Jackson's default pretty
printer: objects break onto indented lines with ``" : "`` between key and value, arrays stay
on one line as ``[ a, b ]``, empty containers print as ``{ }`` and ``[ ]``. Key order and
values are kept as sent.
"""

from __future__ import annotations

import json
from typing import Any

_INDENT = "  "


def _render(value: Any, nesting: int) -> str:
    if isinstance(value, dict):
        if not value:
            return "{ }"
        # Only objects deepen the indentation; arrays are printed inline.
        pad = _INDENT * (nesting + 1)
        members = ",\n".join(f"{pad}{_scalar(key)} : {_render(item, nesting + 1)}" for key, item in value.items())
        return "{\n" + members + "\n" + _INDENT * nesting + "}"
    if isinstance(value, list):
        if not value:
            return "[ ]"
        return "[ " + ", ".join(_render(item, nesting) for item in value) + " ]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def ecr_policy_text(text: str) -> str:
    """Re-serialise a (valid) policy document the way ECR returns it."""
    return _render(json.loads(text), 0)

"""Dockyard's policy engine: IAM policy language and evaluation, pure and without I/O."""

from dockyard.policy.evaluate import Decision, Principal, Request, access_denied_message, evaluate
from dockyard.policy.language import (
    Policy,
    PolicyError,
    Statement,
    parse_identity_policy,
    parse_resource_policy,
)

__all__ = [
    "Decision",
    "Policy",
    "PolicyError",
    "Principal",
    "Request",
    "Statement",
    "access_denied_message",
    "evaluate",
    "parse_identity_policy",
    "parse_resource_policy",
]

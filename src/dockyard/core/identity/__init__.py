"""Identity: accounts, IAM users, groups, roles and policies, STS credentials, registry callers,
and the one authorisation check every operation goes through (access.py).

May import: the policy engine, the stores, dockyard.auth, and core.registry only for the
registry host names in repository URIs (authorization.py)."""

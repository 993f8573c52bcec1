"""Upstream registry credentials for pull through cache rules, read from a secret as ECR reads
them: the secret's current value is a JSON object with `username` and `accessToken`.

ECR reads the secret on the registry's behalf (not the caller's), so no IAM check applies here;
what the caller may do with the rule was decided by the ECR operation that asked."""

from __future__ import annotations

import json
from typing import Any

from dockyard.core.errors import (
    SecretNotFoundException,
    UnableToAccessSecretException,
    UnableToDecryptSecretValueException,
)
from dockyard.core.secrets import store
from dockyard.core.services import Services
from dockyard.store.sealed import SealedValueError

NOT_FOUND = "The ARN of the secret specified in the pull through cache rule was not found"
NOT_ACCESSIBLE = (
    "The secret specified in the pull through cache rule is unable to be accessed. Verify that the secret "
    "exists, is not scheduled for deletion and contains a username and an accessToken, and try again."
)
NOT_DECRYPTABLE = (
    "The secret specified in the pull through cache rule is unable to be decrypted. Verify that the key "
    "that encrypts the secret is available, and try again."
)


async def upstream_credentials(svc: Services, account_id: str, region: str, secret_arn: str) -> tuple[str, str]:
    """(username, accessToken) from the secret `secret_arn` of the registry `account_id` in
    `region`. Raises SecretNotFoundException, UnableToAccessSecretException (scheduled for
    deletion, no current value, not the JSON ECR expects) or UnableToDecryptSecretValueException
    (the value does not open under the data directory's key ring)."""
    async with svc.db.read() as conn:
        secret = await store.find_secret(conn, account_id, region, secret_arn)
        if secret is None:
            raise SecretNotFoundException(NOT_FOUND)
        rows = await store.version_rows(conn, secret.id)
    if secret.deleted_at is not None:
        raise UnableToAccessSecretException(NOT_ACCESSIBLE)
    current = store.pick_version(rows, None, store.CURRENT)
    if current is None:
        raise UnableToAccessSecretException(NOT_ACCESSIBLE)
    try:
        value = store.open_value(store.key_ring(svc.settings.data_dir), secret.arn, current)
    except SealedValueError as exc:
        raise UnableToDecryptSecretValueException(NOT_DECRYPTABLE) from exc
    return _parse_credentials(value)


def _parse_credentials(value: store.Value) -> tuple[str, str]:
    if value.is_binary:
        raise UnableToAccessSecretException(NOT_ACCESSIBLE)
    try:
        document: Any = json.loads(value.plaintext.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnableToAccessSecretException(NOT_ACCESSIBLE) from exc
    if not isinstance(document, dict):
        raise UnableToAccessSecretException(NOT_ACCESSIBLE)
    username, token = document.get("username"), document.get("accessToken")
    if not isinstance(username, str) or not isinstance(token, str) or not username or not token:
        raise UnableToAccessSecretException(NOT_ACCESSIBLE)
    return username, token

"""Values sealed at rest with AES-256-GCM under a key ring kept in a file of the data directory
(mode 0600), never in the database: a copy of the database alone opens nothing.

The file holds one hex key a line; the first seals, every one opens. A sealed value starts with
the id of the key that sealed it (the first 8 bytes of the key's SHA-256), so a ring with a new
key in front still opens what older keys sealed, which is what lets a rotation re-seal values
while servers keep running. Each value is bound (as AES-GCM associated data) to the row it
belongs to, so a ciphertext copied to another row does not open.

The ring is read from the file on every use: values are sealed and opened rarely (a secret
written, an upstream contacted), and a rotation is then seen at once by every process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

# cryptography is imported by the functions that seal and open (with the first secret or upstream
# credential a process touches), not at start-up: it costs every process several MiB (issue 19).

_KEY_ID = 8
_NONCE = 12


class SealedValueError(Exception):
    """A sealed value that no key of the ring opens (a lost or replaced key file, or a value
    copied to another row)."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID]


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[bytes, ...]

    @property
    def current(self) -> bytes:
        return self.keys[0]

    def seal(self, plaintext: bytes, binding: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(_NONCE)
        return key_id(self.current) + nonce + AESGCM(self.current).encrypt(nonce, plaintext, binding.encode())

    def open(self, sealed: bytes, binding: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        wanted, nonce, body = sealed[:_KEY_ID], sealed[_KEY_ID : _KEY_ID + _NONCE], sealed[_KEY_ID + _NONCE :]
        for key in self.keys:
            if key_id(key) == wanted:
                try:
                    return AESGCM(key).decrypt(nonce, body, binding.encode())
                except InvalidTag as exc:
                    raise SealedValueError(f"the value of {binding} does not open under its key") from exc
        raise SealedValueError(f"the value of {binding} was sealed under a key this key file does not hold")

    def sealed_under_current(self, sealed: bytes) -> bool:
        return sealed[:_KEY_ID] == key_id(self.current)


def _parse(path: Path) -> KeyRing:
    keys = tuple(bytes.fromhex(line) for line in path.read_text().split() if line)
    if not keys or any(len(key) != 32 for key in keys):
        raise SealedValueError(f"{path} does not hold 256-bit keys, one hex key a line")
    return KeyRing(keys)


def load_or_create(path: Path) -> KeyRing:
    """The ring in `path`, created with one new key on first use. Several processes may race to
    create it: the file appears whole (a hard link of a finished file), and the loser reads it."""
    with contextlib.suppress(FileNotFoundError):
        return _parse(path)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _write_whole(path, [AESGCM.generate_key(bit_length=256)], replace=False)
    return _parse(path)


def write_ring(path: Path, keys: list[bytes]) -> None:
    """Replace the ring in `path` atomically (for a rotation)."""
    _write_whole(path, keys, replace=True)


def _write_whole(path: Path, keys: list[bytes], *, replace: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{key.hex()}\n" for key in keys))
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(staging, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)

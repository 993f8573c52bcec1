"""Which blob store a server uses: `open_blob_store` picks one from the settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.store.blobs.filesystem import FilesystemBlobStore
from dockyard.store.blobs.interface import BlobStore

if TYPE_CHECKING:
    from dockyard.config import Settings


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: S3-compatible for an s3:// URL, else the data directory."""
    if settings.blob_store and settings.blob_store.startswith("s3://"):
        # Imported only when used: aiobotocore is heavy, and most servers never need it.
        from dockyard.store.blobs.s3 import S3BlobStore

        return S3BlobStore(
            settings.blob_store,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            redirect=settings.s3_redirect,
            url_lifetime_seconds=settings.layer_url_lifetime_seconds,
            archive_storage_class=settings.s3_archive_storage_class,
        )
    if settings.blob_store:
        return FilesystemBlobStore(Path(settings.blob_store.removeprefix("file://")), settings.archive_root)
    return FilesystemBlobStore(settings.blob_root, settings.archive_root)

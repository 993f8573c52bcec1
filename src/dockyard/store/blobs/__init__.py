"""Blob storage: the interface every store implements (interface.py), the local file system
(filesystem.py), S3-compatible object stores (s3.py), and the factory that picks one from the
settings (factory.py)."""

"""The local vulnerability database: OSV advisories imported and stored (osv.py, store.py), and
their severities (severity.py)."""

"""Credentials on the wire: SigV4 signatures (sigv4.py) and registry tokens (tokens.py). Pure
functions of requests and secrets; the core decides what a caller may do."""

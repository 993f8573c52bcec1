"""The `dockyard` command (main.py: the group and `serve`) and its subcommands: admin.py
(accounts, users, keys), operations.py (gc, storage, lifecycle), scanning.py (vulndb, gate,
sbom); offline.py opens a data directory for the commands that work without a server."""

"""The core: every ECR operation, whichever door it came through, authorised once as its ECR action.

Rooms, each a package: registry/ (repositories, images, manifests, layers, uploads, blobs, garbage
collection), identity/ (accounts, IAM, STS, callers and authorisation), scanning/ (image scans
and their hooks), operations/ (lifecycle policies, repository creation templates, registry
settings). Beside them, what every room shares: services.py (the database, blob store and
settings a request works with), errors.py (the errors the doors render), client_json.py (JSON
as clients send it) and paging.py (next tokens).

The core imports the policy engine (dockyard.policy), the stores (dockyard.store) and the
signatures and tokens (dockyard.auth); never a door, the server or the commands."""

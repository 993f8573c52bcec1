"""Image scanning as ECR offers it: scan jobs, findings, the registry scanning configuration and
the hooks that start scans on push; the scanner itself is dockyard.scanner.

May import: core.registry (images and layers), core.identity, dockyard.scanner, dockyard.vulndb,
the stores."""

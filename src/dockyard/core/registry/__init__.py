"""The registry: repositories and their settings, policies and tags; images, manifests and tags;
layers, uploads and blobs; garbage collection and storage verification.

May import: core.identity (who calls, and may they), core.operations (creation templates when a
push creates a repository), core.scanning (scan on push), the policy engine and the stores."""

"""The image scanner: reads an image's layers as streams, inventories what is installed, and matches
the inventory against the local vulnerability database (dockyard.vulndb).

Nothing here touches the metadata database or the network: core/scans.py and workers/scans.py
feed it layer streams and store what it finds."""

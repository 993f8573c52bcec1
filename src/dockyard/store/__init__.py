"""Storage: the metadata database (database.py, schema.py, migrations/, group_commit.py,
fastread.py), the blob stores (blobs/), and what turns a full disk or a locked database into a
clear error (capacity.py, holders.py).

May import: dockyard.config and core.errors; nothing else of Dockyard."""

"""Side-by-side benchmarks of Dockyard and the CNCF reference registry: `python -m bench --help`."""

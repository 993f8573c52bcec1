"""Background work in each server process: scans, and housekeeping (garbage collection, lifecycle,
upload expiry) under leases so one node at a time runs each."""

"""The audit trail: CloudTrail-shaped events for every call, appended to JSON-lines files and
searched by LookupEvents."""

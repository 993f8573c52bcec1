"""Replication: images copied to the regions, accounts and sites a registry's configuration names."""

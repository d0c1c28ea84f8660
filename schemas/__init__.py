"""Canonical resident record, per-source mappings and standardizers."""

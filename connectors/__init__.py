"""Extractors for the departmental platforms, and the declarative source registry."""

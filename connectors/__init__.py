"""Extractors for the departmental platforms: one interface (:mod:`connectors.base`), a table of kinds
(:mod:`connectors.kinds`), the connection parts (:mod:`connectors.connections`) and the declarative
source registry (:mod:`connectors.registry`, one YAML file per subsystem in ``sources/``)."""

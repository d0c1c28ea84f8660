"""Resident data hub: CLI, settings and the pipeline steps shared by the CLI and the DAGs."""

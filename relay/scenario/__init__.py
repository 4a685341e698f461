"""Scenario files: the schema, YAML and overrides, and the builder into the core."""

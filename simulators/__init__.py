"""Simulators: a generated district (registry) and its device traffic, for demos, tests and load."""

"""The HTTP API (CONTRACT.md §4) and the operations-center screen."""

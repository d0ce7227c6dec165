"""The composition root: the only code that imports every part (runtime, roles, CLI, demo)."""

"""数字吹哨 (Digital Whistle): the shared package — domain model, settings, bus and storage."""

__version__ = "0.1.0"

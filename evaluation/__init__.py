"""Evaluation tooling that is not part of the product (behaviour sources, scorers' inputs)."""

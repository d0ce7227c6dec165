"""Evaluation and benchmark helpers: scoring against ground truth, behaviour generators. Not part of the product."""

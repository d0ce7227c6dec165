"""Evaluation and benchmark helpers: scoring against ground truth, behaviour generators (evaluation.crest). Not part
of the product: nothing in the product packages imports this."""

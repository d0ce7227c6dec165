"""A second, independent behaviour source for evaluating the household models: the Richardson/CREST model.

``python -m evaluation.crest --households 200 --days 21 --seed 101 --first-day 2026-11-03 --out DIR``
writes a district's registry, its device traffic as MQTT messages, the ground truth (incidents and
confounders) and the absences a family would declare. See PARAMS.md for every number and its
source. richardsonpy (GPL-3.0) is imported only here, never by the product's packages.
"""

"""The front-door evaluation: the household models scored through the product's public surfaces only.

`python -m evaluation.frontdoor` (see `__main__.py`; `make eval` runs the suite of record). The
service is a process (`whistle serve`), the devices speak MQTT, the results come back over REST;
nothing of the product is imported (pyproject.toml holds the import contract). See run.py for the
steps of one run and suite.py for the sources, seeds and operating points.
"""

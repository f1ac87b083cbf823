"""Stands in for rfc3987_syntax in single-user servers: importing it fails at once.

The real module builds an Earley parser at import time, about a second of
every server start on these machines (pulled in by jsonschema's format
checkers through jupyter_events; python-jsonschema/jsonschema#1428).
jsonschema treats a failing import as "no 'iri' format check", which Jupyter
does not use. The hub puts this folder first on the servers' PYTHONPATH.
"""

raise ImportError("rfc3987_syntax is disabled in nbembed's single-user servers (start-up cost)")

"""Getting telemetry in: sources, parsers, the data model, capture files and the Parquet store.

This package imports nothing from ``analytics`` or ``exporters``: everything downstream depends
on the data model defined here, never the other way round.
"""

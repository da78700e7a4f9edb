"""Prometheus text exposition: the shared parser and HTTP scraper behind every /metrics source."""

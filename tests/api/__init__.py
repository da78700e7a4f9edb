"""Tests of the HTTP API, the alert feed and the read-only query runner."""

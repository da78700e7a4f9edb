"""typeperf / relog PDH-CSV files (offline import of Windows performance counter logs)."""

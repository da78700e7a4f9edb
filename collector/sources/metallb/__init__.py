"""MetalLB controller and speaker metrics (Prometheus text, port 7472)."""

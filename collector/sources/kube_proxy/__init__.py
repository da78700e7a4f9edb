"""kube-proxy's /metrics endpoint (Prometheus text, port 10249)."""

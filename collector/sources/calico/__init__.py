"""Calico Felix (port 9091) and calico-kube-controllers IPAM (port 9094) metrics."""

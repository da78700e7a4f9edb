"""windows_exporter on Azure Local / Azure Stack HCI hosts (Prometheus text, port 9182)."""

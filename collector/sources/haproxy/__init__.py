"""HAProxy statistics: the AKS-HCI load balancer VM (``show stat``/``show info``, ``;csv`` page)."""

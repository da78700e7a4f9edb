"""Kubernetes inventory: LoadBalancer services, nodes, pods and API-server VIPs per cluster.

``parse`` turns a Kubernetes List into IP observations and inventory samples (pure);
``settings`` holds the configuration keys; ``kubeconfig`` resolves how to reach and authenticate
to each cluster; ``client`` talks to one API server (lists, watch requests); ``watch`` keeps the
objects a watch has seen; ``source`` turns lists into records (pull) or snapshots (push).
"""

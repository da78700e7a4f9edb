"""Kubernetes inventory: LoadBalancer services, nodes, pods and API-server VIPs per cluster.

``parse`` turns a Kubernetes List into IP observations and inventory samples (pure);
``source`` lists (or lists and watches) them from the API server; ``kubeconfig`` resolves how to
reach and authenticate to each cluster.
"""

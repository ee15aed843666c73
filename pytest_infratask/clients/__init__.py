"""Clients of the outside world: registries, clusters, kubeconfigs, kustomize, manifests.

They know nothing of tasks or pytest; the pipeline above uses them.
"""

"""Kubernetes side of r1serve: rendering the Helm chart (helm/r1serve) and the `r1serve k8s`
commands that apply it, read the RayService's status, and delete it."""

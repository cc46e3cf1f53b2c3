"""The Kubernetes targets: ``minikube`` (started, images built in its Docker) and ``kubernetes``
(any cluster a kubeconfig context names, images pushed to a registry).

``up`` renders ``templates/k8s/``, applies it with server-side apply, waits for the rollouts
saying why anything is pending, and forwards local ports to the pods through the API server.
Each module reads alone: ``manifests`` (what is applied), ``checks`` (``doctor``'s),
``rollout`` (waiting, and why not ready), ``jobs`` (training Jobs), ``forwarding`` (the
background port-forward), ``teardown`` (``down``); ``target`` composes them.
"""

from .forwarding import FORWARDS
from .jobs import CRONJOB, TRAINER_SELECTOR
from .manifests import IMAGES, MANIFESTS, NAMESPACE, RESOURCES, SECRET_NAME
from .rollout import STUCK, WORKLOADS
from .target import KubeTarget

__all__ = [
    "CRONJOB",
    "FORWARDS",
    "IMAGES",
    "MANIFESTS",
    "NAMESPACE",
    "RESOURCES",
    "SECRET_NAME",
    "STUCK",
    "TRAINER_SELECTOR",
    "WORKLOADS",
    "KubeTarget",
]

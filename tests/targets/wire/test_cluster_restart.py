"""After `minikube stop` / `minikube start` on a driver whose API server port is random per
start: the API-server emulator moves to a new port (``restart_on_new_port``) and the kubeconfig
is rewritten as minikube does; the background port-forward must follow it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from .conftest import PROFILE, target, up


def test_the_forwarder_follows_the_api_server_to_its_new_address(site):
    up(target(), forward=True)
    t = target()
    try:
        first = t.forwarder.pid()
        assert httpx.get(t.endpoint("model-api") + "/healthz", timeout=10).status_code == 200
        site.emu.restart_on_new_port()
        site.emu.write_kubeconfig(Path(os.environ["KUBECONFIG"]), PROFILE)

        again = target()  # a later command
        url = again.endpoint("model-api")
        assert again.forwarder.pid() != first  # restarted, not left dialling the old address
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        target().stop_forwarder()

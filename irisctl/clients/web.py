"""HTTP calls to the stack's services (model API, health endpoints), bounded in time."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from ..errors import IrisctlError, NotUp


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 2xx within ``timeout_s``."""
    try:
        return httpx.get(url, timeout=timeout_s).is_success
    except httpx.HTTPError:
        return False


def get_json(url: str, timeout_s: float = 3.0) -> Any:
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise IrisctlError(f"{url} is not reachable: {exc}") from None
    resp.raise_for_status()
    return resp.json()


def predict(api_url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """POST /predict; the API's JSON answer, or an IrisctlError carrying its message."""
    try:
        resp = httpx.post(f"{api_url}/predict", json=payload, timeout=timeout_s)
    except httpx.ConnectError:
        raise NotUp(
            f"the model API at {api_url} is not reachable",
            "check `irisctl status`; start the stack with `irisctl up`",
        ) from None
    except httpx.HTTPError as exc:
        raise IrisctlError(f"the model API at {api_url} failed: {exc}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {"detail": resp.text[:200]}
    if resp.status_code == 503:
        raise IrisctlError(
            f"the model API has no model: {body.get('detail')}", "run `irisctl train --now`"
        )
    if not resp.is_success:
        raise IrisctlError(f"the model API answered {resp.status_code}: {body.get('detail')}")
    return dict(body)


def port_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound (nobody listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers do: connections in TIME_WAIT from a previous run do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Retryable(IrisctlError):
    """An answer a later retry may not get (503: no model yet; a dropped connection)."""


class TooLarge(IrisctlError):
    """413: the request was over the API's body or row limit; a smaller one may pass."""


class ScoringClient:
    """POSTs CSV batches to /predict over kept-alive connections; safe to share by threads."""

    def __init__(self, api_url: str, connections: int, timeout_s: float = 60.0) -> None:
        self.url = f"{api_url}/predict"
        self.http = httpx.Client(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def score_csv(self, body: bytes) -> tuple[str, str]:
        """One batch; (model version, CSV answer with its header line)."""
        try:
            resp = self.http.post(self.url, content=body, headers={"content-type": "text/csv"})
        except httpx.ConnectError:
            raise Retryable(f"the model API at {self.url} is not reachable") from None
        except httpx.HTTPError as exc:
            raise Retryable(f"the model API at {self.url} failed: {exc}") from None
        if resp.is_success:
            return resp.headers.get("x-model-version", "?"), resp.text
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text[:200]
        if resp.status_code == 413:
            raise TooLarge(f"the model API answered 413: {detail}")
        if resp.status_code in (502, 503, 504):
            raise Retryable(f"the model API answered {resp.status_code}: {detail}")
        raise IrisctlError(f"the model API answered {resp.status_code}: {detail}")

    def close(self) -> None:
        self.http.close()

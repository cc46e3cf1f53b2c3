"""HTTP calls to the stack's services (model API, health endpoints), bounded in time."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import BadInput, IrisctlError, NotUp


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


class Unreachable(Retryable):
    """Nothing answered at the API's address (retried in a run over a file; for one request,
    the stack is not up)."""


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
            raise Unreachable(f"the model API at {self.url} is not reachable") from None
        except httpx.HTTPError as exc:
            raise Retryable(f"the model API at {self.url} failed: {exc}") from None
        if resp.is_success:
            return resp.headers.get("x-model-version", "?"), resp.text
        raise _failure(resp)

    def close(self) -> None:
        self.http.close()


def _failure(resp: httpx.Response) -> IrisctlError:
    """The error for an answer that is not 2xx: 413 TooLarge, 502-504 Retryable, else final."""
    detail = _detail(resp)
    if resp.status_code == 413:
        return TooLarge(f"the model API answered 413: {detail}")
    if resp.status_code in (502, 503, 504):
        return Retryable(f"the model API answered {resp.status_code}: {detail}")
    return IrisctlError(f"the model API answered {resp.status_code}: {detail}")


def _detail(resp: httpx.Response) -> str:
    """The API's error message (its JSON ``detail``), else the start of the body."""
    try:
        return str(resp.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200]


@dataclass(frozen=True)
class Feedback:
    """The API's answer to POST /feedback."""

    accepted: int
    duplicates: list[str]
    unknown: list[str]


class FeedbackClient:
    """POSTs labels to /feedback over kept-alive connections; safe to share by threads."""

    def __init__(self, api_url: str, connections: int, timeout_s: float = 60.0) -> None:
        self.url = f"{api_url}/feedback"
        self.http = httpx.Client(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def send(self, labels: list[tuple[str, str]]) -> Feedback:
        """One request of (id, label) pairs; BadInput with the API's message for a 422."""
        body = json.dumps(
            {"labels": [{"id": i, "label": label} for i, label in labels]}, separators=(",", ":")
        )
        try:
            resp = self.http.post(
                self.url, content=body.encode(), headers={"content-type": "application/json"}
            )
        except httpx.ConnectError:
            raise Unreachable(f"the model API at {self.url} is not reachable") from None
        except httpx.HTTPError as exc:
            raise Retryable(f"the model API at {self.url} failed: {exc}") from None
        if resp.status_code == 422:  # a label that is not a class name, a malformed body
            raise BadInput(f"the model API refused the labels: {_detail(resp)}")
        if resp.status_code == 404:
            raise IrisctlError(
                f"the model API at {self.url} has no /feedback: it runs an older version than "
                "this irisctl"
            )
        if not resp.is_success:
            raise _failure(resp)
        try:
            data = resp.json()
            return Feedback(int(data["accepted"]), list(data["duplicates"]), list(data["unknown"]))
        except (ValueError, KeyError, TypeError):
            raise IrisctlError(
                f"the model API at {self.url} answered 200 without accepted, duplicates and "
                f"unknown: {resp.text[:200]}"
            ) from None

    def close(self) -> None:
        self.http.close()

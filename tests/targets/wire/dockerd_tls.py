"""A Docker endpoint like minikube's dockerd: TCP + TLS with client-certificate verification
(``--tlsverify``), in front of this machine's real Docker engine (``/var/run/docker.sock``).

minikube's docker-env points clients at ``tcp://NODE_IP:2376`` with ``DOCKER_TLS_VERIFY=1``
and ``DOCKER_CERT_PATH=~/.minikube/certs`` holding ``ca.pem``, ``cert.pem``, ``key.pem``
(https://minikube.sigs.k8s.io/docs/handbook/pushing/#1-pushing-directly-to-the-in-cluster-docker-daemon-docker-env;
Docker's side: https://docs.docker.com/engine/security/protect-access/#use-tls-https-to-protect-the-docker-daemon-socket).
A client without a certificate signed by that CA is refused in the TLS handshake, as dockerd
does. Bytes are piped unchanged, so builds, pulls and image lookups are the real engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import threading
from pathlib import Path

from .certs import make_ca, make_leaf

DOCKER_SOCKET = "/var/run/docker.sock"


class TlsDocker:
    def __init__(self, cert_dir: Path, socket_path: str = DOCKER_SOCKET) -> None:
        self.cert_dir = cert_dir
        self.socket_path = socket_path
        self.port = 0
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="dockerd-tls")

    def env(self) -> dict[str, str]:
        """What ``minikube docker-env --shell none -o json`` prints for this endpoint."""
        return {
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_HOST": f"tcp://127.0.0.1:{self.port}",
            "DOCKER_CERT_PATH": str(self.cert_dir),
        }

    def start(self) -> TlsDocker:
        server_dir = self.cert_dir / "server"
        ca, ca_key = make_ca(server_dir, "minikubeCA")
        server_cert, server_key = make_leaf(server_dir, "server", ca, ca_key, server=True)
        client_cert, client_key = make_leaf(server_dir, "client", ca, ca_key, server=False)
        # The client's files, named as in ~/.minikube/certs.
        shutil.copyfile(ca, self.cert_dir / "ca.pem")
        shutil.copyfile(client_cert, self.cert_dir / "cert.pem")
        shutil.copyfile(client_key, self.cert_dir / "key.pem")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(server_cert, server_key)
        self._ssl = ctx
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the TLS Docker endpoint did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:  # connections still piping (keep-alive clients)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl, backlog=64)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, ssl.SSLError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    if dst.can_write_eof():
                        dst.write_eof()
                    else:
                        dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

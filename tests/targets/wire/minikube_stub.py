"""A ``minikube`` stand-in: prints what real minikube prints for each flag combination irisctl
uses, with its state (profile running or not, addons, what ``start`` fails with) in a JSON file.

Formats, from minikube's source (github.com/kubernetes/minikube):

- ``docker-env`` (cmd/minikube/cmd/docker-env.go): the output format flag is read only under
  ``if ec.Shell == "none"``; so ``docker-env -o json`` *without* ``--shell none`` prints the
  shell ``export`` lines, and ``--shell none -o json`` prints one JSON object of the variables
  (DOCKER_TLS_VERIFY, DOCKER_HOST, DOCKER_CERT_PATH, MINIKUBE_ACTIVE_DOCKERD). A stopped
  cluster: "The control plane node must be running for this command", exit 89
  (reason.GuestUnavailable's ExGuestUnavailable).
- ``status -o json`` (cmd/minikube/cmd/status.go): ``{"Name", "Host", "Kubelet", "APIServer",
  "Kubeconfig", "Worker"}``; the exit code is a bitmask of what is not running (1 host,
  2 kubelet/cluster, 4 kubeconfig: 7 when stopped); a missing profile prints "Profile "P" not
  found" on stderr and exits 85 (ExGuestNotFound).
- ``start`` (pkg/minikube/reason/reason.go): a failure ends with
  "Exiting due to REASON_CODE: message" and the reason's exit code (PROVIDER_DOCKER_NOT_RUNNING
  → 69, ExProviderUnavailable); ``--output=json`` is not emulated.
- ``addons list -o json`` (cmd/minikube/cmd/config/addons_list.go): ``{"addon": {"Profile":
  P, "Status": "enabled"|"disabled"}}``; ``addons enable X`` prints "The 'X' addon is enabled".
- ``ip``: the node's IP; ``stop``: "1 node stopped.".

Every call's argv is appended to ``argv.log`` in the state directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ADDONS = ("dashboard", "default-storageclass", "ingress", "metrics-server", "storage-provisioner")


def default_state(profile: str, docker_env: dict[str, str], ip: str = "192.168.49.2") -> dict:
    return {
        "profiles": {profile: {"running": True}},
        "ip": ip,
        "docker_env": docker_env,
        "start_fails": "",  # a reason code, e.g. PROVIDER_DOCKER_NOT_RUNNING
        "addons": {a: a in ("default-storageclass", "storage-provisioner") for a in ADDONS},
    }


def install(bin_dir: Path, state_dir: Path, state: dict[str, Any]) -> Path:
    """Write the ``minikube`` script into ``bin_dir`` and its state into ``state_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(state, indent=1))
    root = Path(__file__).resolve().parents[3]
    script = bin_dir / "minikube"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from tests.targets.wire.minikube_stub import main\n"
        f"sys.exit(main(sys.argv[1:], {str(state_dir)!r}))\n"
    )
    script.chmod(0o755)
    return script


def load(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / "state.json").read_text())


def save(state_dir: Path, state: dict[str, Any]) -> None:
    (state_dir / "state.json").write_text(json.dumps(state, indent=1))


def argv_log(state_dir: Path) -> list[str]:
    path = state_dir / "argv.log"
    return path.read_text().splitlines() if path.exists() else []


def _flag(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def main(argv: list[str], state_dir_name: str) -> int:
    state_dir = Path(state_dir_name)
    with (state_dir / "argv.log").open("a") as log:
        log.write(" ".join(argv) + "\n")
    state = load(state_dir)
    profile = _flag(argv, "-p", "--profile") or "minikube"
    args = [
        a
        for i, a in enumerate(argv)
        if a not in ("-p", "--profile") and (i == 0 or argv[i - 1] not in ("-p", "--profile"))
    ]
    args = [a for a in args if not a.startswith(("--profile=", "-p="))]
    command = args[0] if args else ""
    known = state["profiles"].get(profile)
    running = bool(known and known["running"])
    out = sys.stdout.write
    err = sys.stderr.write

    def not_found() -> int:
        err(
            f'🤷  Profile "{profile}" not found. Run "minikube profile list" to view all '
            "profiles.\n"
        )
        err(f'👉  To start a cluster, run: "minikube start -p {profile}"\n')
        return 85

    if command == "status":
        if known is None:
            return not_found()
        value = "Running" if running else "Stopped"
        fields = {
            "Name": profile,
            "Host": value,
            "Kubelet": value,
            "APIServer": value,
            "Kubeconfig": "Configured" if running else "Stopped",
            "Worker": False,
        }
        if _flag(args, "-o", "--output") == "json":
            out(json.dumps(fields) + "\n")
        else:
            out(
                f"{profile}\ntype: Control Plane\nhost: {value}\nkubelet: {value}\n"
                f"apiserver: {value}\nkubeconfig: {fields['Kubeconfig']}\n\n"
            )
        return 0 if running else 7
    if command == "start":
        out(f"😄  [{profile}] minikube v1.34.0 on Debian 12\n")
        out("✨  Using the docker driver based on user configuration\n")
        reason = state.get("start_fails") or ""
        if reason == "PROVIDER_DOCKER_NOT_RUNNING":
            out("\n")
            err(
                '💣  Exiting due to PROVIDER_DOCKER_NOT_RUNNING: "docker version --format '
                '<no value>-<no value>:<no value>" exit status 1: Cannot connect to the Docker '
                "daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
            )
            err("💡  Suggestion: Start the Docker service\n")
            err("📘  Documentation: https://minikube.sigs.k8s.io/docs/drivers/docker/\n")
            return 69
        if reason:
            err(f"❌  Exiting due to {reason}: emulated failure\n")
            return 80
        out(f'👍  Starting "{profile}" primary control-plane node in "{profile}" cluster\n')
        out("🐳  Preparing Kubernetes v1.31.0 on Docker 27.2.0 ...\n")
        out("🔎  Verifying Kubernetes components...\n")
        out(
            f'🏄  Done! kubectl is now configured to use "{profile}" cluster and "default" '
            "namespace by default\n"
        )
        state["profiles"][profile] = {"running": True}
        save(state_dir, state)
        return 0
    if command == "stop":
        if known is None:
            return not_found()
        out(f'✋  Stopping node "{profile}"  ...\n🛑  1 node stopped.\n')
        state["profiles"][profile] = {"running": False}
        save(state_dir, state)
        return 0
    if command == "ip":
        if not running:
            return _not_running(profile)
        out(state["ip"] + "\n")
        return 0
    if command == "docker-env":
        if known is None:
            return not_found()
        if not running:
            return _not_running(profile)
        env = {**state["docker_env"], "MINIKUBE_ACTIVE_DOCKERD": profile}
        if _flag(args, "--shell") == "none":
            fmt = _flag(args, "-o", "--output") or ""
            if fmt == "json":
                out(json.dumps(env) + "\n")
            elif fmt == "yaml":
                out("".join(f"{k}: {json.dumps(v)}\n" for k, v in env.items()))
            else:
                out("".join(f"{k}={v}\n" for k, v in env.items()))
            return 0
        for k, v in env.items():
            out(f'export {k}="{v}"\n')
        out(
            f"\n# To point your shell to minikube's docker-daemon, run:\n"
            f"# eval $(minikube -p {profile} docker-env)\n"
        )
        return 0
    if command == "addons" and len(args) > 1:
        sub = args[1]
        if not running:
            return _not_running(profile)
        if sub == "list":
            listed = {
                a: {"Profile": profile, "Status": "enabled" if on else "disabled"}
                for a, on in sorted(state["addons"].items())
            }
            if _flag(args, "-o", "--output") == "json":
                out(json.dumps(listed) + "\n")
            else:
                out("".join(f"| {a} | {profile} | {v['Status']} |\n" for a, v in listed.items()))
            return 0
        if sub in ("enable", "disable") and len(args) > 2:
            addon = args[2]
            if addon not in state["addons"]:
                err(
                    f"❌  Exiting due to MK_ADDON_ENABLE: run callbacks: {addon} is not a valid "
                    "addon\n"
                )
                return 10
            state["addons"][addon] = sub == "enable"
            save(state_dir, state)
            out(f"🌟  The '{addon}' addon is {sub}d\n")
            return 0
    err(f'Error: unknown command "{" ".join(args)}" for "minikube" (stub)\n')
    return 64


def _not_running(profile: str) -> int:
    sys.stderr.write("🤷  The control plane node must be running for this command\n")
    sys.stderr.write(f'👉  To start a cluster, run: "minikube start -p {profile}"\n')
    return 89

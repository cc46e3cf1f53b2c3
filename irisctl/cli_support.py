"""The typer adaptations the commands in ``cli.py`` stand on: the error boundary, global options
accepted after the verb, help that shows what a user types, the global options themselves and
the option helpers every command shares.

Like ``cli.py``, nothing here imports a heavy SDK at import time, so ``--help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from . import __version__, output
from .errors import IrisctlError

if TYPE_CHECKING:
    from .settings import Config


class Group(TyperGroup):
    """The error boundary: an IrisctlError becomes 'Error: … / Hint: …' and its exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _what_a_user_types(self.params)
        for command in self.commands.values():
            _what_a_user_types(command.params)

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except IrisctlError as exc:
            output.error(exc.message, exc.hint)
            if (ctx.obj or {}).get("verbose"):
                output.err_console.print_exception()
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            reporter = (ctx.obj or {}).get("reporter")
            output.interrupted(ctx.invoked_subcommand, reporter.unfinished if reporter else None)
            raise typer.Exit(130) from None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, args))


def hoist_global_options(group: Any, args: list[str]) -> list[str]:
    """Move the global options given after the verb to before it, as kubectl accepts them.

    ``irisctl up --target local -v`` is ``irisctl --target local -v up``. Values of the verb's own
    options and everything after ``--`` stay where they are.
    """
    takes_value = _option_names(group.params)
    verb_at = 0
    while verb_at < len(args) and args[verb_at].startswith("-") and args[verb_at] != "--":
        name = args[verb_at].split("=", 1)[0]
        verb_at += 2 if takes_value.get(name) and "=" not in args[verb_at] else 1
    if verb_at >= len(args) or args[verb_at] not in group.commands:
        return args
    own = _option_names(group.commands[args[verb_at]].params)
    hoisted: list[str] = []
    kept: list[str] = []
    rest = args[verb_at + 1 :]
    i = 0
    while i < len(rest):
        token = rest[i]
        name = token.split("=", 1)[0]
        if token == "--":
            kept += rest[i:]
            break
        width = 2 if "=" not in token else 1
        if name in takes_value and name not in own:
            width = width if takes_value[name] else 1
            hoisted += rest[i : i + width]
        else:
            width = width if own.get(name) else 1
            kept += rest[i : i + width]
        i += width
    return [*args[:verb_at], *hoisted, args[verb_at], *kept]


def _what_a_user_types(params: list[Any]) -> None:
    """Help shows what a user types: an option a word for its value (``--api-port PORT``, not
    ``<int>``); flags and arguments no type label (see ``_no_type_label``)."""
    for p in params:
        option = getattr(p, "param_type_name", "") == "option"
        if option and not (p.is_flag or p.count) and p.metavar is None:
            p.metavar = max(p.opts, key=len).lstrip("-").split("-")[-1].upper()


def _no_type_label(self: Any, ctx: Any) -> str | None:
    # typer labels every flag `<bool>` (even --help) and every argument with its Python type
    # (`<list[str]>`), which reads as if flags took values. Class-wide, so typer's own --help
    # and completion flags read the same.
    if isinstance(self, TyperArgument):
        return None
    if self.is_flag or self.count:
        return ""
    return _typer_option_type(self, ctx)


_typer_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _no_type_label  # type: ignore[method-assign]
TyperArgument.display_type_rich = _no_type_label  # type: ignore[method-assign]


def _option_names(params: list[Any]) -> dict[str, bool]:
    """Each option's spellings → whether it takes a value."""
    return {
        name: not (p.is_flag or p.count)
        for p in params
        if getattr(p, "param_type_name", "") == "option" and not p.is_eager
        for name in (*p.opts, *p.secondary_opts)
    }


JsonOpt = typer.Option(False, "--json", help="Print the result as JSON, for scripts.")


def _version(value: bool) -> None:
    if value:
        print(f"irisctl {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    target: str = typer.Option(
        None,
        "--target",
        help="Where the stack runs: local, minikube or Kubernetes (default: auto).",
    ),
    context: str = typer.Option(
        None, "--context", help="Kubernetes target: the kubeconfig context (always named)."
    ),
    registry: str = typer.Option(
        None, "--registry", help="Kubernetes target: where the services image is pushed."
    ),
    namespace: str = typer.Option(
        None, "--namespace", help="Kubernetes targets: the namespace (default iris-mlops)."
    ),
    kubeconfig: str = typer.Option(
        None, "--kubeconfig", help="Kubernetes targets: kubeconfig [$KUBECONFIG, ~/.kube/config]."
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The options before (or after) any verb; ``load_config`` reads them back."""
    ctx.obj = {
        "verbose": verbose,
        "flags": {
            "target": target,
            "context": context,
            "registry": registry,
            "namespace": namespace,
            "kubeconfig": kubeconfig,
        },
    }


def load_config(ctx: typer.Context, **flags: Any) -> Config:
    """The configuration a command runs with: its own flags over the global ones, then
    ``IRISCTL_*``, the config file, what ``up`` recorded and the defaults."""
    from . import settings, state

    home = settings.default_home()
    return settings.load({**ctx.obj["flags"], **flags}, home=home, recorded=state.read(home))


def reporter(json_out: bool) -> output.Reporter:
    """Progress for a long command: on stderr under ``--json``, so stdout stays the JSON."""
    return output.Reporter(to_stderr=json_out)

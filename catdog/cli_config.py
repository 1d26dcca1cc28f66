"""The commands that inspect configs rather than train: `configs`, `config keys|show`,
`completion`. `register` adds them to the `catdog` app, each wrapped in its error handling."""

from collections.abc import Callable
from typing import Any

import typer

from catdog.completion import SHELLS, complete_config, complete_set, completion_script

SET_HELP = "Override a key: --set optimizer.lr=0.05 (repeatable; `catdog config keys` lists them)."
CONFIG_HELP = "YAML config file, or a shipped config's name (`catdog configs`)."


def config_option() -> Any:
    return typer.Option(
        None, "--config", "-c", help=CONFIG_HELP, autocompletion=complete_config, metavar="FILE"
    )


def set_option(help_text: str = SET_HELP) -> Any:
    return typer.Option(
        [], "--set", "-s", help=help_text, autocompletion=complete_set, metavar="KEY=VALUE"
    )


def list_configs() -> None:
    """The configs shipped with catdog, each with what it is for."""
    from catdog.shipped import shipped_configs

    configs = shipped_configs()
    width = max(len(config.name) for config in configs)
    for config in configs:
        typer.echo(f"{config.name:<{width}}  {config.description}")
    typer.echo(
        "\nuse one with --config NAME; copy one to edit: catdog configs copy NAME [DEST]",
        err=True,
    )


def copy(
    name: str = typer.Argument(..., help="A shipped config's name, e.g. sgd."),
    destination: str = typer.Argument(
        None, help="File or folder to copy it to (default: NAME.yaml here)."
    ),
) -> None:
    """Copy a shipped config out, to edit and train with --config FILE."""
    from catdog.shipped import copy_config

    typer.echo(str(copy_config(name, destination)))


def keys(
    markdown: bool = typer.Option(
        False, "--markdown", help="A Markdown table (the README's) instead of aligned columns."
    ),
) -> None:
    """Every config key with its type, default and meaning, from the schema's docstrings."""
    from catdog.schema_docs import keys_table

    typer.echo(keys_table(markdown=markdown))


def show(config: str = config_option(), set_: list[str] = set_option()) -> None:
    """The resolved config as YAML, marking each value that differs from its default."""
    from catdog.config import load_config
    from catdog.schema_docs import show as show_config
    from catdog.shipped import resolve_config

    path = resolve_config(config) if config is not None else None
    resolved = load_config(path, set_)
    source = " + ".join([str(path) if path else "the defaults", *(f"--set {s}" for s in set_)])
    typer.echo(show_config(resolved, source))


def completion(
    shell: str = typer.Argument(..., help=f"One of {', '.join(SHELLS)}.", metavar="SHELL"),
) -> None:
    """Print the shell completion script; e.g. in ~/.bashrc: eval "$(catdog completion bash)"."""
    from catdog.errors import ConfigError

    if shell not in SHELLS:
        raise ConfigError(f"completion {shell}: choose one of {', '.join(SHELLS)}")
    typer.echo(completion_script(shell), nl=False)


def register(app: typer.Typer, reports_errors: Callable[[Any], Any]) -> None:
    """Add `configs`, `config keys|show` and `completion` to `app`."""
    configs_app = typer.Typer(
        help="List the shipped configs (or copy one out: configs copy NAME [DEST]).",
        invoke_without_command=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @configs_app.callback()
    def configs_callback(ctx: typer.Context) -> None:
        """List the configs shipped with catdog; `configs copy NAME [DEST]` copies one out."""
        if ctx.invoked_subcommand is None:
            reports_errors(list_configs)()

    configs_app.command("copy")(reports_errors(copy))
    app.add_typer(configs_app, name="configs")

    config_app = typer.Typer(
        help="Inspect the config schema (keys) or a resolved config (show).",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    config_app.command("keys")(reports_errors(keys))
    config_app.command("show")(reports_errors(show))
    app.add_typer(config_app, name="config")
    app.command("completion")(reports_errors(completion))

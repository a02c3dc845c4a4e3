"""`scregnet` command line. The only part of `scregnet/` that may import zenml, click, `pipelines`
or `steps`: the core below it stays importable without the orchestration layer.

Commands by area: `run` (demo, train, schedule), `data` (validate, embed), `registry` (promote,
rollback, predict, compare), `research` (benchmark, study, tune), `watch` (new-priors watcher),
`ui` (dashboard).
"""

from __future__ import annotations

import os

import click

from scregnet.cli.errors import ScregnetGroup
from scregnet.home import configure


@click.group(cls=ScregnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scregnet")
@click.option(
    "--debug",
    is_flag=True,
    envvar="SCREGNET_DEBUG",
    help="Show Python tracebacks (and ZenML's step tracebacks) on errors [env SCREGNET_DEBUG=1].",
)
def main(debug: bool) -> None:
    """scRegNet gene regulatory link prediction: foundation-model gene embeddings + GNN + MLP.

    State (ZenML store, MLflow database, artifacts) lives under $SCREGNET_HOME (default ./.scregnet).
    """
    if debug:
        os.environ["SCREGNET_DEBUG"] = "1"  # child processes (watcher runs) inherit it
    configure()


def _register_commands() -> None:
    from scregnet.cli import data, registry, research, run, ui, watch

    for module in (run, data, registry, research, watch, ui):
        for command in module.COMMANDS:
            main.add_command(command)


_register_commands()

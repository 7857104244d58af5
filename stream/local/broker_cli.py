"""`kpi kafka up | down | status`: the local broker from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stream.local.broker import KAFKA_VERSION, BrokerError, LocalBroker, create_topics
from stream.settings import load_settings

kafka_app = typer.Typer(
    help=f"The local single-node Apache Kafka {KAFKA_VERSION} broker (KRaft, loopback only).",
    no_args_is_help=True,
)
console = Console(stderr=True)

Port = Annotated[int, typer.Option(help="broker port on 127.0.0.1")]
ControllerPort = Annotated[
    int | None, typer.Option(help="controller port on 127.0.0.1 (default: port + 1)")
]
StateDir = Annotated[
    Path | None, typer.Option(help="data, config, pid and log (default .kpi/kafka-<port>)")
]


def _broker(port: int, controller_port: int | None, state_dir: Path | None) -> LocalBroker:
    return LocalBroker(port=port, controller_port=controller_port, state_dir=state_dir)


@kafka_app.command()
def up(
    port: Port = 9092,
    controller_port: ControllerPort = None,
    state_dir: StateDir = None,
    topics: Annotated[bool, typer.Option(help="create the product's topics")] = True,
) -> None:
    """Start the broker (fetching its jars the first time) and create the topics."""
    broker = _broker(port, controller_port, state_dir)
    try:
        broker.up()
        created = create_topics(broker.bootstrap, load_settings().topic_specs()) if topics else []
    except BrokerError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    status = broker.status()
    console.print(
        f"Kafka {KAFKA_VERSION} runs on [bold]{broker.bootstrap}[/bold] (pid {status.pid}); "
        f"log {status.log_path}"
    )
    if created:
        console.print(f"created topics: {', '.join(created)}")


@kafka_app.command()
def down(port: Port = 9092, state_dir: StateDir = None) -> None:
    """Stop the broker started from this state directory (by its recorded pid)."""
    stopped = _broker(port, None, state_dir).down()
    console.print("broker stopped" if stopped else "no broker of ours was running")


@kafka_app.command()
def status(port: Port = 9092, state_dir: StateDir = None) -> None:
    """Say whether the broker runs and which topics exist; exit code 3 when it does not run."""
    result = _broker(port, None, state_dir).status()
    if not result.running:
        console.print(f"not running ({result.bootstrap}); log {result.log_path}")
        raise typer.Exit(3)
    console.print(f"running on {result.bootstrap}, pid {result.pid}; log {result.log_path}")
    for topic in result.topics:
        typer.echo(topic)

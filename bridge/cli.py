"""The `ocpp-bridge` command line: run, validate, health, check-config, simulate (README.md,
"Command line")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from bridge import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocpp-bridge",
        description="Charger-side OCPP 2.0.1 stack that talks to the OEM firmware over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"ocpp-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the service (logs to stderr)")
    run.add_argument("--config", required=True, metavar="FILE.toml")

    validate = commands.add_parser(
        "validate", help="check MQTT message files against the bridge's schemas"
    )
    validate.add_argument("--action", metavar="NAME", help="OCPP action of response messages")
    validate.add_argument("--json", action="store_true", help="one JSON result per message")
    validate.add_argument(
        "--strict", action="store_true", help="a message the service would refuse is invalid"
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="'-' reads standard input")

    health = commands.add_parser("health", help="exit 0 when the running service is up")
    health.add_argument("--config", required=True, metavar="FILE.toml")

    check = commands.add_parser(
        "check-config",
        help="check the configuration as run would, without starting or writing anything",
    )
    check.add_argument("--config", required=True, metavar="FILE.toml")

    from bridge.oem_sim.cli import add_arguments as simulate_arguments

    simulate = commands.add_parser(
        "simulate", help="play OEM charger firmware against the bridge (bridge.oem_sim)"
    )
    simulate_arguments(simulate)
    return parser


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps every line itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"{stamp}%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("websockets", "aiomqtt", "paho"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _run(config: str) -> int:
    from bridge.app import serve
    from bridge.config import ConfigError, load_configuration
    from bridge.instance import InstanceError, claim
    from bridge.store import StoreError

    try:
        configuration = load_configuration(config)
        settings = configuration.settings
        setup_logging(settings.logging.level)
        for warning in configuration.warnings:
            logging.getLogger("bridge.config").warning("%s", warning)
        instance = claim(settings)  # one bridge per store and per station
        try:
            asyncio.run(serve(settings))
        finally:
            instance.release()
    except (ConfigError, StoreError, InstanceError) as e:
        print(f"ocpp-bridge: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    except Exception:
        logging.getLogger("bridge").exception("ocpp-bridge stopped on an unexpected error")
        return EXIT_INVALID  # non-zero: systemd and Docker restart it
    return EXIT_OK


def _check_config(config: str) -> int:
    """Like `nginx -t`: every effective value with its source, then `configuration ok` (exit 0),
    or the sentence `run` would stop with (exit 2). Nothing is started or written."""
    from bridge.config import ConfigError, load_configuration
    from bridge.station.configuration import dry_run
    from bridge.store import StoreError

    try:
        configuration = load_configuration(config)
    except ConfigError as e:
        print(f"ocpp-bridge check-config: {e}", file=sys.stderr)
        return EXIT_USAGE
    rows = configuration.effective_values()
    width = min(56, max(len(f"{name} = {value}") for name, value, _ in rows))
    for name, value, source in rows:
        print(f"{f'{name} = {value}':<{width}}  # {source}")
    for warning in configuration.warnings:
        print(f"warning: {warning}")
    try:
        changes = dry_run(configuration.settings)
    except (ConfigError, StoreError) as e:
        print(f"ocpp-bridge check-config: {e}", file=sys.stderr)
        return EXIT_USAGE
    for line in changes:
        print(f"store: {line}")
    print("configuration ok")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config)
    if args.command == "validate":
        from bridge.validate import main as validate_main

        try:
            return validate_main(
                args.files, action=args.action, as_json=args.json, strict=args.strict
            )
        except BrokenPipeError:  # e.g. `ocpp-bridge validate ... | head`: the reader left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_INVALID
    if args.command == "health":
        from bridge.health import main as health_main

        return health_main(args.config)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "simulate":
        from bridge.oem_sim.cli import run as simulate

        return simulate(args, "ocpp-bridge simulate")
    return EXIT_USAGE  # pragma: no cover - argparse requires a command

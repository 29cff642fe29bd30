"""The simulator's command line: `python -m bridge.oem_sim` and `ocpp-bridge simulate`."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bridge.oem_sim import DEFAULT_TOKEN, EXIT_FAILED, EXIT_USAGE, TOKEN_TYPES

if TYPE_CHECKING:
    from bridge.oem_sim.simulator import Options, Simulator


class UsageError(Exception):
    """A bad argument, as one sentence."""


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a number above 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _ocpp_result(text: str) -> tuple[str, dict[str, Any]]:
    action, sep, payload = text.partition("=")
    try:
        parsed = json.loads(payload) if sep else None
    except ValueError:
        parsed = None
    if not action.isalnum() or not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be ACTION={JSON object}, e.g. 'GetLog={...}'")
    return action, parsed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options (shared by `ocpp-bridge simulate`)."""
    broker = parser.add_argument_group("broker and station")
    broker.add_argument(
        "--config",
        metavar="FILE.toml",
        help="the bridge's configuration: its [mqtt] broker and topics, its [station]",
    )
    broker.add_argument("--host", help="MQTT broker host (default: [mqtt] host, or 127.0.0.1)")
    broker.add_argument("--port", type=int, help="MQTT broker port (default: [mqtt] port, or 1883)")
    broker.add_argument(
        "--device-model",
        choices=("config", "demo", "off"),
        default="config",
        help="answer device_model with --config's own values (default; unanswered without "
        "--config or when they do not fit), a built-in demo station, or never",
    )
    broker.add_argument(
        "--ocpp-result",
        action="append",
        type=_ocpp_result,
        default=[],
        metavar="ACTION=JSON",
        help="answer a delegated ocpp_message ACTION with this CallResult payload "
        "(others: CallError NotSupported)",
    )
    play = parser.add_argument_group("scenario")
    play.add_argument(
        "--scenario",
        choices=("session", "idle"),
        default="session",
        help="session: plug in, authorize, charge, stop, unplug (default); idle: only answer",
    )
    play.add_argument("--repeat", type=_count, default=1, metavar="N", help="sessions (1)")
    play.add_argument("--evse", type=_count, default=1, metavar="N", help="the EVSE (1)")
    play.add_argument("--token", default=DEFAULT_TOKEN, help=f"id token ({DEFAULT_TOKEN})")
    play.add_argument("--token-type", choices=TOKEN_TYPES, default="ISO14443")
    play.add_argument(
        "--charge-seconds", type=_seconds, default=10.0, metavar="S", help="charging time (10)"
    )
    play.add_argument(
        "--power-kw", type=_positive, default=11.0, metavar="KW", help="charging power (11)"
    )
    play.add_argument(
        "--stop",
        choices=("token", "unplug"),
        default="token",
        help="end by presenting the token again (default) or by unplugging",
    )
    play.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="longest wait for the bridge at each step (30)",
    )
    play.add_argument(
        "--expect-transaction",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fail unless the bridge stops charging after the stopping token and reports "
        "transaction_status ended (default: on)",
    )
    play.add_argument(
        "--wait-csms",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="after the bridge is ready, wait this long for its CSMS connection (10; 0: not)",
    )


def parser(prog: str = "python -m bridge.oem_sim") -> argparse.ArgumentParser:
    from bridge.oem_sim import __doc__ as usage

    result = argparse.ArgumentParser(
        prog=prog,
        description="An OEM charger firmware simulator for ocpp-bridge, over MQTT.",
        epilog=usage.split("\n\n", 1)[1] if usage and "\n\n" in usage else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(result)
    return result


def options(args: argparse.Namespace) -> Options:
    """The simulator's options from parsed arguments; UsageError with one sentence."""
    from bridge.oem_sim import device_model
    from bridge.oem_sim.simulator import Options

    settings = None
    if args.config:
        from bridge.config import ConfigError, load_configuration

        try:
            settings = load_configuration(args.config).settings
        except ConfigError as e:
            raise UsageError(str(e)) from None
    result = Options(layout=device_model.layout(settings))
    if settings is not None:
        mqtt = settings.mqtt
        result.host, result.port = mqtt.host, mqtt.port
        result.username = mqtt.username or None
        result.password = mqtt.password.get_secret_value() or None
        result.tls, result.ca_file = mqtt.tls, mqtt.ca_file or None
        result.request_topic, result.response_topic = mqtt.request_topic, mqtt.response_topic
    if args.host is not None:
        result.host = args.host
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise UsageError("--port must be between 1 and 65535.")
        result.port = args.port
    if args.device_model == "config":
        result.device_model, result.device_model_note = device_model.from_settings(settings)
    elif args.device_model == "demo":
        result.device_model = device_model.demo(result.layout)
    else:
        result.device_model_note = "--device-model off"
    evses = {spec.ocpp_id for spec in result.layout}
    if args.evse not in evses:
        raise UsageError(
            f"--evse {args.evse}: the station has EVSE{'s' if len(evses) > 1 else ''} "
            f"{', '.join(map(str, sorted(evses)))}."
        )
    if not 0 < len(args.token) <= 36:
        raise UsageError("--token must be 1 to 36 characters (OCPP IdToken).")
    if args.token_type == "no_authorization" and args.stop == "token":  # noqa: S105
        raise UsageError(
            "--token-type no_authorization has no token to stop with: add --stop unplug."
        )
    result.scenario, result.repeat, result.evse = args.scenario, args.repeat, args.evse
    result.token, result.token_type = args.token, args.token_type
    result.charge_seconds, result.power_kw = args.charge_seconds, args.power_kw
    result.stop, result.timeout = args.stop, args.timeout
    result.expect_transaction, result.wait_csms = args.expect_transaction, args.wait_csms
    result.ocpp_results = dict(args.ocpp_result)
    return result


async def _run_until_signal(simulator: Simulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await simulator.run(stop)


def run(args: argparse.Namespace, prog: str) -> int:
    """Run the simulator from parsed arguments; the exit status (0, 1 or 2)."""

    def complain(sentence: str) -> None:
        print(f"{prog}: {sentence}", file=sys.stderr, flush=True)

    from bridge.oem_sim.simulator import Simulator

    try:
        chosen = options(args)
    except UsageError as e:
        complain(str(e))
        return EXIT_USAGE
    try:
        return asyncio.run(_run_until_signal(Simulator(chosen, complain=complain)))
    except KeyboardInterrupt:  # pragma: no cover - the signal handler takes SIGINT first
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None, prog: str = "python -m bridge.oem_sim") -> int:
    return run(parser(prog).parse_args(argv), prog)

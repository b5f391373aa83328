"""CLI: parse arguments, load config, hand over. No logic lives here.

resilient-proxy run|check|doctor|inventory|demo|config-reference (DESIGN.md section 3), --version.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from proxy.config import ConfigError, load_config

PUBLIC = ("run", "check", "doctor", "inventory", "demo", "config-reference")


def version() -> str:
    try:
        return metadata.version("resilient-proxy")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from proxy.status import VERSION

        return VERSION


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="resilient-proxy",
        description="A caching reverse proxy that keeps websites working when the APIs behind them fail.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    # The metavar lists the public commands only: `_worker` is internal (the fleet starts it).
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(PUBLIC) + "}")
    run = sub.add_parser("run", help="serve the configured routes")
    run.add_argument("--config", required=True)
    check = sub.add_parser("check", help="validate a config file and print its routes")
    check.add_argument("--config", required=True)
    doctor = sub.add_parser("doctor", help="probe every upstream before launch")
    doctor.add_argument("--config", required=True)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    inventory = sub.add_parser("inventory", help="what each integration depends on")
    inventory.add_argument("--config", required=True)
    inventory.add_argument("--format", choices=("md", "json"), default="md")
    demo = sub.add_parser("demo", help="a simulated vendor API with the proxy in front of it")
    demo.add_argument("--port", type=int, default=8080, help="proxy port (vendor and admin use free ports)")
    reference = sub.add_parser(
        "config-reference", help="print the configuration reference (markdown) or its JSON Schema"
    )
    reference.add_argument("--format", choices=("md", "schema"), default="md")
    # No help=: a subcommand without one is left out of --help (started by the fleet supervisor).
    worker = sub.add_parser("_worker")
    worker.add_argument("--config", required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--admin-socket", required=True)
    worker.add_argument("--ready-fd", type=int, default=None)
    worker.add_argument("--lifeline-fd", type=int, default=None)
    args = parser.parse_args(argv)

    if args.command == "config-reference":
        from proxy.core.config.reference import render_reference, render_schema

        print(render_reference() if args.format == "md" else render_schema(), end="")
        return 0
    if args.command == "demo":
        from proxy.demo import run_demo

        return run_demo(args.port)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} error(s) in {args.config}", file=sys.stderr)
        return 1
    if args.command == "check":
        from proxy.core.config.report import describe

        print(describe(config))
        return 0
    if args.command == "run":
        from proxy.serve import serve

        return serve(config)
    if args.command == "_worker":
        from proxy.serve import run_worker

        return run_worker(
            config,
            index=args.index,
            admin_socket=args.admin_socket,
            ready_fd=args.ready_fd,
            lifeline_fd=args.lifeline_fd,
        )
    if args.command == "doctor":
        from proxy.doctor import run_doctor

        return run_doctor(config, as_json=args.json)
    from proxy.inventory import render_inventory

    print(render_inventory(config, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())

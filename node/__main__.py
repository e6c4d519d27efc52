"""Run one node: ``python -m node --config CONFIG.yaml --node ID [--data-dir DIR]``.

Exits non-zero with a one-line reason on a bad config (unknown key, duplicate port, missing
secret, unknown node id). SIGTERM or SIGINT stop the node gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from node.config import ConfigError, load_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tabletlog node", description="Run one tabletlog node.")
    parser.add_argument("--config", required=True, help="cluster config YAML")
    parser.add_argument("--node", required=True, help="this node's id in the config")
    parser.add_argument("--data-dir", help="data directory (overrides data_dir in the config)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        config.node(args.node)
    except ConfigError as exc:
        print(f"tabletlog node: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s {args.node} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    data_dir = config.data_dir_for(args.node, args.data_dir)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up; the node runs without it
    except ImportError:
        return asyncio.run(_serve(config, args.node, data_dir))
    return uvloop.run(_serve(config, args.node, data_dir))


async def _serve(config: object, node_id: str, data_dir: Path) -> int:
    from node.server import NodeServer  # noqa: PLC0415 - keep `--help` and config errors fast

    server = NodeServer(config, node_id, data_dir)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    try:
        await server.start()
    except OSError as exc:
        print(f"tabletlog node: cannot start: {exc}", file=sys.stderr)
        await server.stop()
        return 1
    await server.wait_closed()
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

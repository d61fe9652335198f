"""`python -m modelpack.serve [flags]`: the serving image's command and `modelpack serve`'s process."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelpack.serve.config import ConfigError, env_of, load


def parse_args(argv: Sequence[str]) -> tuple[Path | None, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m modelpack.serve",
        description="Serve one model over the Open Inference Protocol (KServe V2 REST).",
        epilog="example: python -m modelpack.serve --name iris --handler onnx --model model.onnx "
        "--model-dir ./models --port 8080",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="serving config JSON (default: $MODELPACK_SERVING_CONFIG or /opt/modelpack/serving.json)",
    )
    parser.add_argument("--name")
    parser.add_argument("--version")
    parser.add_argument("--handler", help='"onnx" or "module:Class"')
    parser.add_argument("--model", help="for onnx: the model file relative to --model-dir")
    parser.add_argument("--model-dir")
    parser.add_argument("--code-dir")
    parser.add_argument("--bundle-digest")
    parser.add_argument(
        "--index-digest", help="the release index's digest (default: $MODELPACK_INDEX_DIGEST)"
    )
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int, help="worker processes; 0 = one per CPU of the quota")
    parser.add_argument("--inference", choices=["inline", "thread"])
    parser.add_argument("--onnx-threads", type=int)
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--no-metrics", dest="metrics", action="store_const", const=False, help="no /metrics")
    parser.add_argument(
        "--no-request-log", dest="request_log", action="store_const", const=False, help="no request lines"
    )
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    return config_path, args


def main(argv: Sequence[str] | None = None) -> int:
    config_path, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load(config_path, env_of(), overrides)
    except ConfigError as exc:
        print(f"modelpack.serve: {exc}", file=sys.stderr)
        return 2
    from modelpack.serve.server import STARTUP_FAILED, die_with_parent, port_problem, run  # uvicorn is heavy

    die_with_parent()

    problem = port_problem(config.host, config.port)
    if problem is not None:
        print(f"modelpack.serve: {problem}", file=sys.stderr)
        return STARTUP_FAILED
    return run(config)


if __name__ == "__main__":
    sys.exit(main())

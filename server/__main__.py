"""``ortserve`` / ``python -m ortserve``: parse settings, set up logging, serve."""

from __future__ import annotations

import sys

from ortserve.ops.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except SettingsError as e:
        print(f"ortserve: {e}", file=sys.stderr)
        return 2
    from ortserve.ops.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from ortserve.ops.workers import serve_workers  # forks before any gRPC object exists

        try:
            return serve_workers(settings)
        except OSError as e:
            print(f"ortserve: {e}", file=sys.stderr)
            return 1
    from ortserve.ops.app import run  # heavy imports (onnxruntime, grpc) after --help and settings errors

    try:
        run(settings)
    except OSError as e:
        print(f"ortserve: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

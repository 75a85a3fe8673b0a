"""``ortserve`` / ``python -m ortserve``: parse settings, set up logging, serve.

``ortserve auth ...`` and ``ortserve audit ...`` are the security subcommands (``ortserve auth --help``),
``ortserve rollout ...`` drives automated rollouts through a running server's Admin service
(``ortserve rollout --help``); anything else is the server's options (``ortserve --help``).
"""

from __future__ import annotations

import sys

from ortserve.ops.settings import SettingsError, load_settings

SUBCOMMANDS = ("auth", "audit")
# Exit statuses: 0 stopped cleanly, 1 could not serve (a port in use...), 2 bad settings,
# 3 a model asks for a GPU execution provider that cannot be created here (see --allow-cpu-fallback).
EXIT_PROVIDER = 3


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "rollout":
        from ortserve.rollout_cli import main as rollout_main

        return rollout_main(args)
    if args and args[0] in SUBCOMMANDS:
        from ortserve.ops.security_cli import main as security_main

        return security_main(args)
    try:
        settings = load_settings(args)
        from ortserve.ops.guard import check_settings

        check_settings(settings)
    except SettingsError as e:
        print(f"ortserve: {e}", file=sys.stderr)
        return 2
    from ortserve.ops.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from ortserve.ops.workers import serve_workers  # forks before any gRPC object exists

        try:
            return serve_workers(settings)  # a worker's exit status 3 is passed on
        except OSError as e:
            print(f"ortserve: {e}", file=sys.stderr)
            return 1
    from ortserve.errors import ProviderUnavailable
    from ortserve.ops.app import run  # heavy imports (onnxruntime, grpc) after --help and settings errors

    try:
        run(settings)
    except SettingsError as e:  # a certificate, auth or key file refused at start
        print(f"ortserve: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"ortserve: {e}", file=sys.stderr)
        return 1
    except ProviderUnavailable:  # already logged, with the model, the provider and why
        return EXIT_PROVIDER
    return 0


if __name__ == "__main__":
    sys.exit(main())

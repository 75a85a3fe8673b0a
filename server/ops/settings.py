"""The server's settings: one typed object fed by CLI flags, a TOML file and ``ORTSERVE_*``
environment variables, in that order of precedence (flags win), over the defaults below.

    ortserve --model-repository models --port 8001
    ORTSERVE_PORT=9001 ortserve
    ortserve --config ortserve.toml        # keys as below, e.g. port = 9001, log_format = "json"

Each value is checked where it comes from (types and bounds, by :mod:`ortserve.schema`), so a bad one is
reported with its source: ``ORTSERVE_PORT: expected an integer from 0 to 65535, got 'eighty'``. Building
resources from them (sessions, servers) is ``ortserve.ops.app``'s job.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.repository import FLAGS_FILE
from ortserve.schema import field_type, field_value, from_table

__all__ = ["Settings", "SettingsError", "build_parser", "load_settings"]

ENV_PREFIX = "ORTSERVE_"


class SettingsError(ValueError):
    """A setting with a bad value, named with where it came from (``--port``, ``ORTSERVE_PORT``, the
    ``--config`` file), e.g. ``ORTSERVE_PORT: expected an integer from 0 to 65535, got 'eighty'``. The
    server does not start.

    What to do: fix that one value; ``ortserve --help`` and the settings reference list every setting
    with its bounds."""


def _opt(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    return field(default=default, metadata={"help": help, "ge": ge, "le": le, "choices": choices})


@dataclass
class Settings:
    model_repository: Path = _opt(Path("models"), "folder holding <model>/<version>/model.onnx")
    host: str = _opt("127.0.0.1", "address the gRPC server binds to")
    port: int = _opt(8001, "gRPC port (0: pick a free one; the chosen port is logged)", ge=0, le=65535)
    metrics_host: str = _opt("127.0.0.1", "address the Prometheus metrics endpoint binds to")
    metrics_port: int = _opt(
        8002, "Prometheus metrics port (0: pick a free one; -1: disabled)", ge=-1, le=65535
    )
    status_page: bool = _opt(
        True,
        "serve the operator's status page on the metrics port (/ and /status; /status.json): models, versions, "
        "flags, request rate, p99 and errors per variant",
    )
    status_interval: float = _opt(
        5.0,
        "seconds between the status page's samples of the metrics (its charts' resolution)",
        ge=0.1,
        le=60,
    )
    status_window: float = _opt(600.0, "seconds of history the status page keeps and charts", ge=10, le=86400)
    poll_interval: float = _opt(
        0.0,
        "seconds between repository rescans that load new versions and "
        "unload removed ones (0: scan only at start)",
        ge=0,
    )
    max_message_size: int = _opt(64 * 1024 * 1024, "largest gRPC message accepted or sent, in bytes", ge=1024)
    max_input_elements: int = _opt(
        1 << 26, "default bound on elements per input tensor (a model's config.toml may set its own)", ge=1
    )
    inference_threads: int = _opt(
        0,
        "threads in the pool that runs ONNX Runtime batches (0: 8 "
        "or the number of CPU cores, whichever is larger)",
        ge=0,
    )
    require_manifest: bool = _opt(False, "refuse versions that have no manifest.json")
    allow_cpu_fallback: bool = _opt(
        False,
        "serve a version on the CPU when none of the GPU execution providers its config.toml asks for "
        "can be created here (a model's [runtime] allow_cpu_fallback overrides this). Without it such a "
        "version is refused; at startup the server then exits with status 3",
    )
    cache_dir: Path | None = _opt(
        None,
        "folder for caches the execution providers write (TensorRT engines and timing caches) when a "
        "version folder cannot hold them: read-only or signed (default: $XDG_CACHE_HOME/ortserve or "
        "~/.cache/ortserve); give it a persistent volume so that engines survive restarts",
    )
    flags: Path | None = _opt(
        None,
        "OpenFeature flagd JSON file with the routing flags, reloaded when it "
        "changes and written by the Admin service (default: <model_repository>/flags.json)",
    )
    flags_poll_interval: float = _opt(
        1.0, "seconds between checks of the flags file for changes (0: load only at start)", ge=0
    )
    rollout_dir: Path | None = _opt(
        None,
        "folder where automated rollouts keep their state, so a restart resumes them "
        "(default: .rollouts beside the flags file)",
    )
    rollout_interval: float = _opt(
        1.0, "seconds between the rollout controller's looks at running rollouts", ge=0.05, le=3600
    )
    rollout_log_interval: float = _opt(
        30.0, "seconds between the log lines of a rollout waiting for data", ge=1
    )
    shadow_queue_size: int = _opt(
        256, "requests waiting to be mirrored to shadow versions; more are dropped (and counted)", ge=1
    )
    shadow_workers: int = _opt(4, "shadow requests in flight at once", ge=1)
    workers: int = _opt(
        1,
        "server processes sharing the gRPC port (SO_REUSEPORT); a supervisor serves "
        "their combined metrics and restarts a worker that dies",
        ge=1,
        le=256,
    )
    drift_sample_rate: float = _opt(
        0.1,
        "share of requests whose inputs and predictions are compared with the version's reference "
        "profile (0: drift off for all; a model's config.toml [monitoring] may set its own rate)",
        ge=0,
        le=1,
    )
    drift_window: float = _opt(
        600.0, "seconds of sampled traffic each drift statistic covers (sliding)", ge=1
    )
    drift_min_rows: int = _opt(200, "sampled rows a window needs before drift statistics are exported", ge=1)
    drift_top_k: int = _opt(
        10, "features per version exported with their drift (the most drifted)", ge=1, le=1000
    )
    drift_interval: float = _opt(2.0, "seconds between drift updates", ge=0.05)
    feedback_index_size: int = _opt(
        100_000,
        "recent predictions kept for the Feedback call to join ground truth to (0: feedback off)",
        ge=0,
    )
    feedback_ttl: float = _opt(3600.0, "seconds a prediction waits for its ground truth", ge=1)
    payload_log: Path | None = _opt(
        None,
        "folder for the payload log: sampled requests and all feedback as CloudEvents JSON lines, per model",
    )
    payload_log_rate: float = _opt(
        0.01, "share of requests in the payload log (a model's config.toml may set its own)", ge=0, le=1
    )
    payload_log_file_mb: float = _opt(
        16.0, "size at which a payload log file is closed and a new one started", ge=0.001
    )
    payload_log_max_mb: float = _opt(
        1024.0, "payload log size on disk; the oldest files are deleted beyond it", ge=0.001
    )
    payload_log_encoding: str = _opt("base64", "how tensors are written", choices=("base64", "lists"))
    tracing: bool = _opt(False, "OpenTelemetry spans per RPC, request and batch (needs the [tracing] extra)")
    tracing_endpoint: str | None = _opt(
        None, "OTLP/gRPC endpoint for spans (absent: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317)"
    )
    grace_period: float = _opt(
        10.0,
        "seconds SIGTERM/SIGINT may take in all: the drain delay, then answering every request "
        "already received while new ones get UNAVAILABLE; a second signal cuts it short",
        ge=0,
    )
    drain_delay: float = _opt(
        0.0,
        "seconds to keep serving after SIGTERM with health NOT_SERVING, so that load balancers stop "
        "sending first (Kubernetes' preStop pattern); part of --grace-period",
        ge=0,
    )
    max_inflight_bytes: int = _opt(
        0,
        "bound on the bytes that inference requests in flight hold (their decoded inputs), per process; "
        "over it a request gets RESOURCE_EXHAUSTED at once (0: 1/16 of the memory available to the server, "
        "shared among --workers, at least --max-message-size)",
        ge=0,
    )
    max_concurrent_rpcs: int = _opt(
        0,
        "bound on RPCs in flight per process (health checks are not counted); over it an RPC gets "
        "RESOURCE_EXHAUSTED at once (0: one per 256 KiB of --max-inflight-bytes, from 64 to 16384)",
        ge=0,
    )
    heap_trim_interval: float = _opt(
        1.0,
        "seconds between checks of the memory glibc's malloc keeps resident but unused; once that grew "
        "by 32 MiB (after large requests), malloc_trim gives it back to the system (0: never; nothing "
        "without glibc)",
        ge=0,
        le=3600,
    )
    gil_switch_interval_us: int = _opt(
        200,
        "microseconds a Python thread may keep the GIL while another waits for it (Python's own default: "
        "5000): an inference thread then starts and returns its batch sooner while the event loop is busy "
        "answering, and a decoding thread gives the loop its turn sooner",
        ge=10,
        le=100000,
    )
    worker_max_restarts: int = _opt(
        5,
        "--workers: a worker that exits this many times in a row, each time within a minute of "
        "its start, is given up on (logged, in the supervisor's metrics) while the others serve",
        ge=1,
    )
    log_level: str = _opt("info", "log level", choices=("debug", "info", "warning", "error"))
    access_log: bool = _opt(
        False, "log one line per inference request (request id, model, version, variant, status, duration)"
    )
    log_format: str = _opt("text", "log line format", choices=("text", "json"))
    # -- security (README "Security") --
    tls_cert: Path | None = _opt(
        None, "PEM certificate chain for the gRPC port (with --tls-key: TLS); re-read when the file changes"
    )
    tls_key: Path | None = _opt(None, "PEM private key of --tls-cert")
    tls_client_ca: Path | None = _opt(
        None, "PEM CA certificates: clients must present a certificate signed by one of them (mTLS)"
    )
    metrics_tls: bool = _opt(
        False, "serve the metrics port over HTTPS with --tls-cert/--tls-key (and --tls-client-ca)"
    )
    health_port: int = _opt(
        -1,
        "plaintext port that answers only grpc.health.v1, for probes when the gRPC port is TLS "
        "(0: pick a free one; -1: none)",
        ge=-1,
        le=65535,
    )
    auth_file: Path | None = _opt(
        None,
        "TOML file of roles and principals (API key hashes, JWT issuer and JWKS, client certificates); "
        "when set every call, and every request to the metrics port, needs credentials and a role that "
        "grants it; re-read when it changes",
    )
    auth_poll_interval: float = _opt(
        1.0,
        "seconds between checks of the auth file (and its JWKS file) for changes (0: only at start)",
        ge=0,
    )
    open_health: bool = _opt(
        False, "with --auth-file: answer grpc.health.v1 on the gRPC port without credentials"
    )
    open_reflection: bool = _opt(False, "with --auth-file: answer server reflection without credentials")
    open_metrics: bool = _opt(
        False,
        "with --auth-file: serve the metrics port (/metrics and the status page) without credentials, "
        "for scrapers that cannot send any (else it needs a principal whose roles grant 'metrics')",
    )
    audit_log: Path | None = _opt(
        None,
        "append-only, hash-chained JSONL file of control-plane calls and denied calls (mode 0600; "
        "'ortserve audit verify FILE' checks it)",
    )
    insecure: bool = _opt(False, "allow a non-loopback --host without TLS and an auth file")
    trusted_key: Path | None = _opt(
        None,
        "PEM EC public key, or a folder of them, that every model version must be signed with "
        "(ortserve-optimize --sign-key); unsigned or tampered versions are refused (needs ortserve[signing])",
    )
    require_signature: bool = _opt(False, "refuse to start without --trusted-key")
    config: Path | None = field(
        default=None,
        metadata={"help": "TOML file with any of these settings (keys with underscores)", "table": False},
    )

    @property
    def flags_path(self) -> Path:
        return self.flags if self.flags is not None else self.model_repository / FLAGS_FILE

    @property
    def rollout_path(self) -> Path:
        return self.rollout_dir if self.rollout_dir is not None else self.flags_path.parent / ".rollouts"

    def validate(self) -> Settings:
        """Check every value (types and bounds); SettingsError naming the first bad one."""
        for f in dataclasses.fields(self):
            field_value(Settings, f.name, getattr(self, f.name), f.name, error=SettingsError)
        return self


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ortserve",
        description="Serve an ONNX model repository over gRPC (ortserve.v1 Predict) with dynamic batching.",
        epilog="Every option can also be set as ORTSERVE_<NAME> in the environment (e.g. ORTSERVE_PORT=9001) "
        "or as <name> = value in the --config TOML file. Precedence: flags, environment, file, defaults. "
        "Security commands: 'ortserve auth add-key|remove-key|list|check' (the --auth-file) and "
        "'ortserve audit verify FILE' (the --audit-log chain); see 'ortserve auth --help'. "
        "Rollouts: 'ortserve rollout start|status|abort|report --model M' (see 'ortserve rollout --help').",
    )
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        kind = field_type(Settings, f.name)
        help_text = f.metadata["help"] + (f" (default: {f.default})" if f.default is not None else "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=kind,
                default=None,
                choices=f.metadata.get("choices"),
                help=help_text,
                metavar=f.name.upper(),
            )
    return parser


def load_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Merge defaults < TOML file < environment < flags into a validated Settings."""
    environ = dict(os.environ if environ is None else environ)
    args = vars(build_parser().parse_args(argv))
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    config_path = args.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        try:
            data = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"config file {config_path}: {e}") from e
        table = {key.replace("-", "_"): value for key, value in data.get("server", data).items()}
        from_file = from_table(
            Settings, table, f"config file {config_path}", key="setting", error=SettingsError
        )
        values.update({name: getattr(from_file, name) for name in table})
        values["config"] = Path(config_path)

    for name in fields:
        env = ENV_PREFIX + name.upper()
        if env in environ and name != "config":
            values[name] = field_value(Settings, name, environ[env], env, text=True, error=SettingsError)

    for name, value in args.items():
        if value is not None:
            flag = "--" + name.replace("_", "-")
            values[name] = field_value(Settings, name, value, flag, error=SettingsError)
    return Settings(**values)

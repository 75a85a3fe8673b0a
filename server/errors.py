"""The server's exceptions. They know nothing of the transport: one table at the gRPC edge
(``ortserve.edge.status``) maps them to status codes, and each names the transport-neutral
``outcome`` that metrics and logs record for a request that ends with it.

    ServeError                    outcome              gRPC status at the edge
     ├── ModelNotFound            not_found            NOT_FOUND: no such model or version loaded
     ├── InvalidInput             invalid_input        INVALID_ARGUMENT: the request does not fit
     │    └── FlagsError          invalid_input        (a flags document that is refused)
     ├── QueueFull                queue_full           RESOURCE_EXHAUSTED: the batcher's queue is full
     ├── Overloaded               overloaded           RESOURCE_EXHAUSTED: over the server's bound on request
     │                                                 bytes or RPCs in flight (admission control)
     ├── DeadlineExceeded         deadline_exceeded    DEADLINE_EXCEEDED: expired before it ran
     ├── Unavailable              unavailable          UNAVAILABLE: unloading or draining (retryable)
     ├── FailedPrecondition       failed_precondition  FAILED_PRECONDITION: not in this server's state
     │    └── ProviderUnavailable failed_precondition  (a version asks for an execution provider that
     │                                                  ONNX Runtime cannot create here: refused at load)
     ├── Unauthenticated          unauthenticated      UNAUTHENTICATED: no or bad credentials (auth file set)
     ├── PermissionDenied         permission_denied    PERMISSION_DENIED: the caller's roles do not allow it
     ├── InferenceFailed          failed               INTERNAL: ONNX Runtime failed on the batch
     └── InternalError            internal             INTERNAL: a bug; logged with its traceback

A request cancelled by its caller ends with the outcome ``cancelled`` (``asyncio.CancelledError``).

Messages that quote what a client sent (names, versions, ids) quote it through ``quoted``: at most
``QUOTE_LIMIT`` characters, control characters escaped, so that an error can neither grow with
the request nor forge a log line.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CANCELLED",
    "OK",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FlagsError",
    "InferenceFailed",
    "InternalError",
    "InvalidInput",
    "ModelNotFound",
    "Overloaded",
    "PermissionDenied",
    "ProviderUnavailable",
    "QueueFull",
    "ServeError",
    "Unauthenticated",
    "Unavailable",
    "quoted",
]

OK = "ok"
CANCELLED = "cancelled"


class ServeError(Exception):
    """Base of every error reported to a caller. ``recorded`` is set once the request it ended
    has been counted, so that the edge does not count it twice.

    Each subclass's docstring says what the error means and, after "What to do:", what a caller or
    an operator does about it; the documentation's troubleshooting page is generated from them."""

    outcome: ClassVar[str] = "error"
    recorded: bool = False


class ModelNotFound(ServeError):
    """No loaded model or version by that name: the model is not in the repository, its versions were all
    refused at load, the version named is not loaded (the version policy left it out, or it was removed), or
    the version has no model card. The message names what is loaded.

    What to do: check the name against ListModels (or the status page); if the version should be there,
    the server log says why it was refused (``model X version N: refused``), and
    ``ortserve_model_load_failures_total`` counts refusals."""

    outcome = "not_found"


class InvalidInput(ServeError):
    """The request does not fit the model's signature: an unknown, missing or repeated input, a wrong
    dtype, rank or dimension, data whose length is not shape x item size, a batch over max_batch_size, too
    many elements, an unknown output name. The message names the input with what was expected and what
    came, e.g. ``input 'input': dimension 1 is 63, expected 64``.

    What to do: fix the request; ModelMetadata (or ``Client.metadata``) gives the signature. The server
    is unaffected: other requests keep being served."""

    outcome = "invalid_input"


class FlagsError(InvalidInput):
    """A flags document that is refused (from the flags file or Admin SetFlags). ``reason`` is a short
    label for metrics: json, schema, operator, weights, version, size, depth, io. The last good flags keep
    routing; nothing changes until a valid document arrives.

    What to do: read the reason in the message (SetFlags answers it; for the file, the server log and
    Admin GetFlags ``last_error``), fix the document (variants must name loaded versions, fractional
    weights must sum to 100, operators must be ones the server knows) and write it again."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QueueFull(ServeError):
    """The version's batching queue is full (``max_queue_size`` in config.toml): the server is taking more
    requests than it can run, and refuses at once rather than let latency grow without bound.

    What to do: retry with backoff, or give the version more capacity (``instances``, threads, more
    workers or replicas) or a larger ``max_queue_size`` if the latency that comes with it is acceptable;
    ``ortserve_queue_depth`` shows the queue."""

    outcome = "queue_full"


class Overloaded(ServeError):
    """Refused at once because the server holds as much as it may (admission control): the inputs of the
    requests in flight would hold more than ``--max-inflight-bytes`` once decoded ("server busy: requests in
    flight hold ..."; "request too large" when this request alone is over the bound), or more than
    ``--max-concurrent-rpcs`` RPCs are in flight. ``reason`` ("bytes", "rpcs") labels the metric that counts
    it, ``ortserve_admission_rejected_total{reason}``. Nothing of the request was decoded or queued.

    What to do: retry with backoff (another replica can take it). If refusals are frequent, compare
    ``ortserve_inflight_request_bytes`` with the bound: add replicas or workers, or raise the bound where the
    memory allows (its default is 1/16 of the memory the server may use). A "request too large" is never
    going to fit: split the batch into smaller requests, or raise ``--max-inflight-bytes``."""

    outcome = "overloaded"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DeadlineExceeded(ServeError):
    """The request's deadline (the gRPC timeout, or the V2 ``timeout`` parameter) passed while it waited
    in the queue, so it was never run.

    What to do: give a longer timeout, or reduce the load or the batching window
    (``max_queue_delay_us``); compare ``ortserve_queue_duration_seconds`` with the timeout."""

    outcome = "deadline_exceeded"


class Unavailable(ServeError):
    """The server or the version is going away: the server is draining after SIGTERM ("the server is shutting
    down; retry, ..."; health already says NOT_SERVING and every RPC received before it runs to its answer),
    or the version is being unloaded (removed from the repository, or replaced by a model reload). Retryable:
    nothing of the request ran.

    What to do: retry, on another replica if there is one; clients with gRPC retries configured for
    UNAVAILABLE do this on their own. If clients see it at every rollout, let the load balancer take the
    server out of rotation first: ``--drain-delay`` (or Kubernetes' preStop wait) keeps it serving while
    health says NOT_SERVING."""

    outcome = "unavailable"


class FailedPrecondition(ServeError):
    """The request is valid but not in this server's state: e.g. a repository load/unload under
    ``--workers`` (each worker has its own view of the repository), or a model card that no longer matches
    its version's manifest.

    What to do: read the message; for repository changes under ``--workers``, change the repository
    folder and let ``--poll-interval`` carry it to every worker."""

    outcome = "failed_precondition"


class Unauthenticated(ServeError):
    """No credentials, or credentials that do not verify (unknown API key, bad or expired JWT), on a
    server with an auth file.

    What to do: send an API key or a JWT as ``authorization: Bearer ...`` (``Client(..., api_key=...)``),
    or a client certificate under mTLS; ``ortserve auth check`` says whether a key is in the file. Every
    denial is counted in ``ortserve_auth_denied_total`` and written to the audit log."""

    outcome = "unauthenticated"


class PermissionDenied(ServeError):
    """An authenticated caller whose roles do not grant the RPC's group (or the model it names).

    What to do: give the principal a role that grants the group (``ortserve auth list`` shows the roles;
    the README's Security table which group each RPC is in), or a model pattern that covers the model."""

    outcome = "permission_denied"


class ProviderUnavailable(FailedPrecondition):
    """A model version asks for a GPU (or other accelerator) execution provider that ONNX Runtime cannot
    create on this machine, and CPU fallback is not allowed for it. Raised when its sessions are created;
    the version is refused, and a server that meets one at startup exits (status 3). The log line
    (``"event": "startup_refused"``) names the model, version and provider and why ONNX Runtime could not
    create it.

    What to do: run the version where its provider exists (the GPU image, a node with the GPU and driver),
    install the GPU build of ONNX Runtime, or let it run on the CPU: ``--allow-cpu-fallback``, or
    ``[runtime] allow_cpu_fallback = true`` in the model's config.toml (served much slower, with a warning)."""


class InferenceFailed(ServeError):
    """ONNX Runtime failed on the batch this request ran in (a shape the graph cannot handle, an operator
    error). Only that batch's requests fail; the server goes on.

    What to do: the message carries ONNX Runtime's error; check the input against what the model
    computes (shapes that differ between inputs, values out of range), and the version with
    ``onnxruntime`` directly if it persists."""

    outcome = "failed"


class InternalError(ServeError):
    """A bug in the server: an exception no part of it expected. It is logged with its traceback and the
    request answered INTERNAL; the server keeps serving.

    What to do: report it with the log line (it names the request id) and the request that caused it."""

    outcome = "internal"


QUOTE_LIMIT = 80
_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A client's string as an error message or a log line quotes it: in single quotes, with
    backslashes, quotes and unprintable characters escaped (``\\n``, ``\\x1b``), cut after ``limit``
    characters with the full length said.

        quoted("digits")        # 'digits'
        quoted("a\nb")          # 'a\nb'  (a backslash and an n: one line)
        quoted("x" * 100_000)   # 'xxx…x'… (100000 characters)
    """
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit]
    if not cut.isprintable() or "\\" in cut or "'" in cut:
        cut = "".join(_escape(c) for c in cut)
    if len(text) > limit:
        return f"'{cut}'… ({len(text)} characters)"
    return f"'{cut}'"

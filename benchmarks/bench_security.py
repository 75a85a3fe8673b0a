"""What security costs per request: API-key auth, JWT auth (cached) and TLS, each against plaintext
without auth, on the demo model (digits, one row per request) at c=32.

    .venv/bin/python -m benchmarks.bench_security [--duration 5 --rounds 3 --concurrency 32] [--write-results]

One server process per arm (same repository, same settings but the security ones), one client
process driving them all with the same sender (ortserve AsyncClient, Predict), the arms
interleaved round by round so that a change in the machine's load hits every arm alike. Per arm:
throughput, p50/p99 latency, and the server process's CPU time per request (its user+system time
over the measured rounds divided by the requests it answered). "Added" is relative to plaintext:
CPU per request / plaintext's - 1, and plaintext's throughput / the arm's - 1.
Target (issue 11): API-key auth adds at most 5% per request.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    DIGITS,
    DIGITS_CONFIG,
    command,
    digits_stand_in,
    machine,
    process_cpu_seconds,
    publish,
    write_section,
)
from benchmarks.loadgen.loops import closed_loop
from benchmarks.loadgen.results import LoadResult

HEAD = "## Security: the per-request cost of auth and TLS"


def _credentials(folder: Path) -> dict[str, object]:
    """A CA and a server certificate, an API key and its auth file, a JWT and its JWKS."""
    import ipaddress

    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    from ortserve.edge.principals import hash_key, new_key

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    api_key = new_key()
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key()))
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256"}]}))
    claims = {"sub": "bench", "iss": "https://bench", "aud": "ortserve", "exp": int(time.time()) + 3600}
    token = jwt.encode({**claims, "roles": ["client"]}, signer, algorithm="RS256", headers={"kid": "k1"})
    (folder / "auth.toml").write_text(
        f'[[keys]]\nname = "bench"\nsha256 = "{hash_key(api_key)}"\nroles = ["client"]\n\n'
        '[jwt]\njwks = "jwks.json"\nissuer = "https://bench"\naudience = "ortserve"\n'
    )
    return {"api_key": api_key, "token": token}


def arms(folder: Path, creds: dict[str, object]) -> dict[str, tuple[list[str], dict[str, object]]]:
    """arm -> (server flags, AsyncClient options)."""
    tls = ["--tls-cert", str(folder / "server.pem"), "--tls-key", str(folder / "server.key")]
    auth = ["--auth-file", str(folder / "auth.toml")]
    ca = {"root_certificates": folder / "ca.pem"}
    return {
        "plaintext": ([], {}),
        "api key": (auth, {"api_key": creds["api_key"]}),
        "jwt (cached)": (auth, {"token": creds["token"]}),
        "tls": (tls, ca),
        "tls + api key": ([*tls, *auth], {**ca, "api_key": creds["api_key"]}),
    }


class _Context:
    """The servicer-context calls the links make (metadata, peer, TLS auth context), for timing them alone."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict:
        return {}

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"


def link_costs(folder: Path, creds: dict[str, object], calls: int = 20_000) -> dict[str, float]:
    """Microseconds per call of the chain's security links alone (enter, inspect, leave), in process:
    what auth adds to each request, free of the machine's load on the end-to-end figures."""
    import gc

    from ortserve._proto.ortserve.v1 import inference_pb2 as pb
    from ortserve.edge.auth import Auth, AuthPolicy
    from ortserve.edge.interceptors import Rpc

    auth = Auth(AuthPolicy(folder / "auth.toml"))
    rpc = Rpc("/ortserve.v1.Inference/Predict", "inference", False)
    request = pb.PredictRequest(model="digits")
    out = {}
    for name, secret in (("api key", creds["api_key"]), ("jwt (cached)", creds["token"])):
        context = _Context((("user-agent", "grpc-python"), ("authorization", f"Bearer {secret}")))

        async def loop(n: int, context=context) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                await auth.enter(rpc, context)  # type: ignore[arg-type]
                auth.inspect(rpc, context, request)  # type: ignore[arg-type]
                auth.leave(rpc, context, None)  # type: ignore[arg-type]
            return time.perf_counter() - t0

        asyncio.run(loop(calls // 10))
        gc.disable()
        try:
            out[name] = min(asyncio.run(loop(calls)) for _ in range(3)) / calls * 1e6
        finally:
            gc.enable()
    return out


async def one_round(targets, duration: float, concurrency: int, results, cpu) -> None:
    from ortserve.client import AsyncClient, build_request

    request = build_request("digits", DIGITS.inputs(1))
    for name, (server, options) in targets.items():
        async with AsyncClient(server.target, **options) as client:
            metadata = client._security.merge(None)

            async def send(_: int, client=client, metadata=metadata) -> str:
                return (await client.stub.Predict(request, timeout=30, metadata=metadata)).version

            await closed_loop(send, concurrency, 0.5, warmup=0.0)  # connect and warm up
            before = process_cpu_seconds(server.proc.pid)
            result = await closed_loop(send, concurrency, duration, warmup=0.0)
            cpu[name][0] += process_cpu_seconds(server.proc.pid) - before
            cpu[name][1] += result.requests
            results[name].append(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_security",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per arm per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--write-results", action="store_true", help="write the section in RESULTS.md")
    args = parser.parse_args(argv)

    from ortserve.testing import ServerProcess

    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        folder = Path(tmp)
        repo = folder / "models"
        publish(repo, "digits", 1, digits_stand_in(), DIGITS_CONFIG)
        creds = _credentials(folder)
        plan = arms(folder, creds)
        servers = {
            name: ServerProcess(repo, *flags, "--metrics-port", "-1") for name, (flags, _) in plan.items()
        }
        load_before = os.getloadavg()
        try:
            targets = {name: (servers[name], options) for name, (_, options) in plan.items()}
            results: dict[str, list[LoadResult]] = {name: [] for name in plan}
            cpu = {name: [0.0, 0] for name in plan}
            for _ in range(args.rounds):
                asyncio.run(one_round(targets, args.duration, args.concurrency, results, cpu))
        finally:
            for s in servers.values():
                s.stop()
        load_after = os.getloadavg()
        links = link_costs(folder, creds)

    rows = []
    base_cpu = cpu["plaintext"][0] / max(cpu["plaintext"][1], 1) * 1e6
    base_rps = statistics.median(r.throughput_rps for r in results["plaintext"])
    for name in plan:
        rs = results[name]
        rps = statistics.median(r.throughput_rps for r in rs) or float("nan")
        us = cpu[name][0] / max(cpu[name][1], 1) * 1e6
        errors = dict(sum((collections.Counter(r.errors) for r in rs), collections.Counter())) or 0
        rows.append(
            f"| {name} | {rps:,.0f} | {statistics.median(r.p50_ms for r in rs):.2f} | "
            f"{statistics.median(r.p99_ms for r in rs):.2f} | {us:.0f} | {us / base_cpu - 1:+.1%} | "
            f"{base_rps / rps - 1:+.1%} | {errors} |"
        )
    plain_us = cpu["plaintext"][0] / max(cpu["plaintext"][1], 1) * 1e6
    link_rows = [f"| {name} | {us:.1f} | {us / plain_us:.1%} |" for name, us in links.items()]
    share = links["api key"] / plain_us
    verdict = (
        f"{'met' if share <= 0.05 else 'NOT met'}, {links['api key']:.1f} µs = {share:.1%} of the request"
    )
    argv_shown = [
        "--duration",
        str(args.duration),
        "--rounds",
        str(args.rounds),
        "--concurrency",
        str(args.concurrency),
    ]
    section = "\n".join(
        [
            HEAD,
            "",
            f"{datetime.date.today().isoformat()}, {machine()}; load average {load_before[0]:.2f} before, "
            f"{load_after[0]:.2f} after. `{command('benchmarks.bench_security', argv_shown)}`",
            "",
            f"Predict, one digits row per request, c={args.concurrency}, {args.rounds} interleaved rounds of "
            f"{args.duration:g} s per arm; one server process per arm, one client process. Server CPU per request "
            "is the server's user+system time over the measured windows / requests answered.",
            "",
            "| arm | req/s (median round) | p50 ms | p99 ms | server CPU µs/request | CPU added | throughput cost | errors |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "The auth link alone (enter + inspect + leave, in process, best of 3 x 20,000 calls), against the "
            f"plaintext arm's server CPU per request ({plain_us:.0f} µs):",
            "",
            "| credential | µs per call | of a request |",
            "|---|---|---|",
            *link_rows,
            "",
            f"Target (API-key auth adds at most 5% per request): {verdict}. On a machine shared with other "
            "work the end-to-end arms move by more than auth costs from run to run (compare their CPU and "
            "throughput columns with each other); the link's own time is the figure that holds.",
            "",
        ]
    )
    print(section)
    if args.write_results:
        write_section(section, HEAD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

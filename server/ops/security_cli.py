"""``ortserve auth ...`` and ``ortserve audit ...``: keys in the auth file, and the audit chain.

    ortserve auth add-key ci-bot --role operator --auth-file auth.toml    # prints the key once
    ortserve auth remove-key ci-bot --auth-file auth.toml
    ortserve auth list --auth-file auth.toml
    ortserve auth check --auth-file auth.toml
    ortserve audit verify audit.jsonl

A new key is 256 random bits; only its sha256 goes into the file (created with mode 0600 when
missing). The file is changed by appending a ``[[keys]]`` table (comments and layout stay), and
only when the result still checks out; the write is atomic. A running server picks the change up
within ``--auth-poll-interval``. With ``--audit-log`` the change is also recorded there.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import tempfile
from pathlib import Path

from ortserve.edge.authfile import AuthFileError, load_auth_file, parse_auth_text
from ortserve.edge.principals import hash_key, new_key
from ortserve.ops.audit import AuditLog, verify_chain
from ortserve.schema import toml_value

__all__ = ["main"]

HEADER = """\
# ortserve auth file: roles and principals (README "Security"). Keys are stored as sha256 hashes.
# Built-in roles: reader, client, operator, admin. Add your own, e.g.
#   [roles.fraud-team]
#   inference = ["fraud-*"]
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ortserve", description="ortserve security commands")
    sub = p.add_subparsers(dest="command", required=True)
    auth = sub.add_parser("auth", help="manage the auth file").add_subparsers(dest="action", required=True)
    add = auth.add_parser("add-key", help="make a new API key: prints it once, stores its hash")
    add.add_argument("name", help="who holds the key (audit records name it)")
    add.add_argument("--role", action="append", required=True, help="a role for the key (repeatable)")
    add.add_argument(
        "--expires", help="RFC 3339 time after which the key is refused, e.g. 2027-01-31T00:00:00Z"
    )
    remove = auth.add_parser("remove-key", help="remove a key by name")
    remove.add_argument("name")
    auth.add_parser("list", help="list roles, keys (names only) and certificates")
    auth.add_parser("check", help="check the auth file (and its JWKS file) as the server would")
    for p_ in auth.choices.values():
        p_.add_argument("--auth-file", type=Path, required=True, help="the auth file (TOML)")
        p_.add_argument("--audit-log", type=Path, help="also record the change in this audit log")
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="check the hash chain; names the first bad line")
    verify.add_argument("file", type=Path)
    return p


def _write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _audit(args: argparse.Namespace, **fields) -> None:
    if args.audit_log is not None:
        log = AuditLog(args.audit_log)
        try:
            log.write(
                [
                    {
                        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                        "event": "auth-cli",
                        "pid": os.getpid(),
                        "user": os.environ.get("USER", ""),
                        **fields,
                    }
                ]
            )
        finally:
            log.close()


def _add_key(args: argparse.Namespace) -> int:
    path: Path = args.auth_file
    text = path.read_text() if path.exists() else HEADER
    key = new_key()
    entry = [
        "",
        "[[keys]]",
        f"name = {toml_value(args.name)}",
        f"sha256 = {toml_value(hash_key(key))}",
        f"roles = {toml_value(list(args.role))}",
        f"created = {toml_value(datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'))}",
    ]
    if args.expires:
        entry.append(f"expires = {toml_value(args.expires)}")
    new_text = text.rstrip("\n") + "\n" + "\n".join(entry) + "\n"
    parse_auth_text(new_text, str(path))  # the whole file must still check out
    _write(path, new_text)
    _audit(args, action="add-key", name=args.name, roles=list(args.role), path=str(path))
    print(key)
    print(
        f"ortserve: added key {args.name!r} ({', '.join(args.role)}) to {path}; it is shown only once",
        file=sys.stderr,
    )
    return 0


def _remove_key(args: argparse.Namespace) -> int:
    path: Path = args.auth_file
    text = path.read_text()
    file = parse_auth_text(text, str(path))
    if not any(k.name == args.name for k in file.keys):
        raise AuthFileError(f"{path}: no key named {args.name!r}")
    # Drop the [[keys]] table whose name matches: from its header to the next table header.
    blocks = re.split(r"(?m)^(?=\s*\[)", text)
    kept = [b for b in blocks if not (re.match(r"\s*\[\[keys\]\]", b) and _names(b) == args.name)]
    new_text = "".join(kept)
    checked = parse_auth_text(new_text, str(path))
    if any(k.name == args.name for k in checked.keys) or len(checked.keys) != len(file.keys) - 1:
        raise AuthFileError(f"{path}: could not remove key {args.name!r} cleanly; edit the file by hand")
    _write(path, new_text)
    _audit(args, action="remove-key", name=args.name, path=str(path))
    print(f"ortserve: removed key {args.name!r} from {path}", file=sys.stderr)
    return 0


def _names(block: str) -> str:
    import tomllib

    try:
        return tomllib.loads(block.replace("[[keys]]", "", 1)).get("name", "")
    except tomllib.TOMLDecodeError:
        return ""


def _list(args: argparse.Namespace) -> int:
    config = load_auth_file(args.auth_file)
    for role, grants in sorted(config.roles.items()):
        print(f"role {role}: " + "; ".join(f"{g} {', '.join(p)}" for g, p in grants.items()))
    for k in config.file.keys:
        expires = f", expires {k.expires.isoformat()}" if k.expires else ""
        print(f"key {k.name}: {', '.join(k.roles)}{expires}")
    for c in config.file.certificates:
        match = c.san or c.common_name or c.subject
        print(f"certificate {c.name} ({match}): {', '.join(c.roles)}")
    if config.file.jwt is not None:
        j = config.file.jwt
        print(f"jwt: issuer {j.issuer}, audience {j.audience}, {len(config.jwks['keys'])} key(s)")  # type: ignore[index]
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load_auth_file(args.auth_file)
    from ortserve.edge.principals import Authenticator

    Authenticator(config)  # the JWKS keys must load too
    mode = args.auth_file.stat().st_mode & 0o777
    warn = f" (warning: mode {mode:o}: others can read it; chmod 600)" if mode & 0o077 else ""
    print(
        f"ortserve: {args.auth_file} is valid: {len(config.file.keys)} keys, "
        f"{len(config.file.certificates)} certificates, {len(config.roles)} roles{warn}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        report = verify_chain(args.file)
    except OSError as e:
        print(f"ortserve: cannot read {args.file}: {e.strerror or e}", file=sys.stderr)
        return 2
    if report.ok:
        print(f"{args.file}: chain intact, {report.lines} lines, head {report.head}")
        return 0
    print(
        f"{args.file}: line {report.bad_line}: {report.problem} "
        f"({report.lines} lines before it verify, head {report.head})",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    actions = {
        "add-key": _add_key,
        "remove-key": _remove_key,
        "list": _list,
        "check": _check,
        "verify": _verify,
    }
    try:
        return actions[args.action](args)
    except (AuthFileError, OSError) as e:
        print(f"ortserve: {e}", file=sys.stderr)
        return 2

"""The gRPC reference from protos/: each service with its RPCs and each message with its fields, with the
comments the .proto files carry (compiled here by grpcio-tools' protoc with source info)."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
ORDER = [
    "ortserve/v1/inference.proto",
    "ortserve/v1/admin.proto",
    "inference/grpc_service.proto",
    "inference/model_config.proto",
]

__all__ = ["render"]


def _compile() -> list:
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    files = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--descriptor_set_out={out}",
            "--include_source_info",
            *files,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {files}")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    order = {name: i for i, name in enumerate(ORDER)}
    return sorted(fds.file, key=lambda f: (order.get(f.name, len(order)), f.name))


def _comments(fd) -> dict[tuple[int, ...], str]:
    out = {}
    for loc in fd.source_code_info.location:
        text = " ".join((loc.leading_comments + " " + loc.trailing_comments).split())
        if text:
            out[tuple(loc.path)] = text
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(field, package: str) -> str:
    from google.protobuf import descriptor_pb2 as d

    if field.type_name:
        name = field.type_name.lstrip(".")
        name = name[len(package) + 1 :] if name.startswith(package + ".") else name
    else:
        name = d.FieldDescriptorProto.Type.Name(field.type)[5:].lower()
    return f"repeated {name}" if field.label == d.FieldDescriptorProto.LABEL_REPEATED else name


def _message(msg, path: tuple[int, ...], comments, package: str, prefix: str, out: list[str]) -> None:
    name = prefix + msg.name
    if msg.options.map_entry:
        return
    out.append(f"#### `{name}`\n")
    if path in comments:
        out.append(comments[path] + "\n")
    if msg.field:
        out.append("| field | number | type | what |\n|---|---|---|---|")
        for i, f in enumerate(msg.field):
            what = comments.get((*path, 2, i), "")
            if f.HasField("oneof_index"):
                what = f"(one of `{msg.oneof_decl[f.oneof_index].name}`) " + what
            out.append(f"| `{f.name}` | {f.number} | `{_type(f, package)}` | {_cell(what)} |")
        out.append("")
    for i, e in enumerate(msg.enum_type):
        _enum(e, (*path, 4, i), comments, f"{name}.", out)
    for i, nested in enumerate(msg.nested_type):
        _message(nested, (*path, 3, i), comments, package, f"{name}.", out)


def _enum(enum, path: tuple[int, ...], comments, prefix: str, out: list[str]) -> None:
    out.append(f"#### enum `{prefix}{enum.name}`\n")
    if path in comments:
        out.append(comments[path] + "\n")
    out.append("| value | number | what |\n|---|---|---|")
    for i, v in enumerate(enum.value):
        out.append(f"| `{v.name}` | {v.number} | {_cell(comments.get((*path, 2, i), ''))} |")
    out.append("")


def render() -> str:
    out: list[str] = []
    for fd in _compile():
        comments = _comments(fd)
        out.append(f"## {fd.name}\n\nPackage `{fd.package}`.\n")
        for si, service in enumerate(fd.service):
            out.append(f"### service `{fd.package}.{service.name}`\n")
            if (6, si) in comments:
                out.append(comments[(6, si)] + "\n")
            out.append("| RPC | request | response | what |\n|---|---|---|---|")
            for mi, m in enumerate(service.method):
                stream_in = "stream " if m.client_streaming else ""
                stream_out = "stream " if m.server_streaming else ""
                req, resp = (
                    t.lstrip(".").removeprefix(fd.package + ".") for t in (m.input_type, m.output_type)
                )
                what = _cell(comments.get((6, si, 2, mi), ""))
                out.append(f"| `{m.name}` | `{stream_in}{req}` | `{stream_out}{resp}` | {what} |")
            out.append("")
        if fd.message_type or fd.enum_type:
            out.append(f"### messages of `{fd.name}`\n")
        for i, e in enumerate(fd.enum_type):
            _enum(e, (5, i), comments, "", out)
        for i, msg in enumerate(fd.message_type):
            _message(msg, (4, i), comments, fd.package, "", out)
    return "\n".join(out)

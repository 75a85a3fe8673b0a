"""The repository layer: the model-repository format, shared by the server and ``ortserve-optimize``.

It owns the file names (:mod:`.layout`), the ``config.toml`` schema with its reader and writer
(:mod:`.config`; its ``[versions]`` table: :mod:`.policy`), ``manifest.json`` (:mod:`.manifest`), reference profiles
(:mod:`.reference`, imported by name: it needs numpy, which ``ortserve --help`` must not load), ``MODEL_CARD.md`` (:mod:`.modelcard`), signatures
(:mod:`.signing`: ``model.sig``, OpenSSF model signing, imported lazily), publishing a version atomically
(:mod:`.publish`),
the flags document as a file (:mod:`.flagsdoc`), discovery of models and versions on disk (:mod:`.scan`)
and atomic file writes (:mod:`.files`). Anything that reads or writes a repository goes through here;
nothing else spells a file name or a config key.

May import: the base modules only (``ortserve.schema``, ``ortserve.errors``, ``ortserve.dtypes``...);
never ``core``, ``rollout``, ``edge`` or ``ops``, and nothing that pulls in gRPC or ONNX Runtime, so that
``ortserve.optimize`` can use it.
"""

from ortserve.repository.config import (
    OPT_LEVELS,
    BatchingConfig,
    ConfigError,
    ModelConfig,
    MonitoringConfig,
    RuntimeConfig,
    TensorConfig,
    VersionPolicy,
    config_text,
    load_model_config,
    parse_model_config,
    set_default_version,
    write_model_config,
)
from ortserve.repository.files import file_stamp, write_atomic
from ortserve.repository.flagsdoc import (
    canary_flag,
    flags_document,
    flags_path,
    flags_text,
    read_flags_text,
    write_flags_text,
)
from ortserve.repository.layout import (
    CONFIG,
    FLAGS_FILE,
    MANIFEST,
    MODEL_CARD,
    MODEL_FILE,
    REFERENCE,
    check_model_name,
    next_version,
    version_dirs,
)
from ortserve.repository.manifest import (
    ManifestError,
    file_digest,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from ortserve.repository.modelcard import ModelCard, read_model_card, render_model_card
from ortserve.repository.publish import publish_version
from ortserve.repository.scan import ModelEntry, scan_repository

__all__ = [
    "CONFIG",
    "FLAGS_FILE",
    "MANIFEST",
    "MODEL_CARD",
    "MODEL_FILE",
    "OPT_LEVELS",
    "REFERENCE",
    "BatchingConfig",
    "ConfigError",
    "ManifestError",
    "ModelCard",
    "ModelConfig",
    "ModelEntry",
    "MonitoringConfig",
    "RuntimeConfig",
    "TensorConfig",
    "VersionPolicy",
    "canary_flag",
    "check_model_name",
    "config_text",
    "file_digest",
    "file_stamp",
    "flags_document",
    "flags_path",
    "flags_text",
    "load_model_config",
    "next_version",
    "parse_model_config",
    "publish_version",
    "read_flags_text",
    "read_manifest",
    "read_model_card",
    "render_model_card",
    "scan_repository",
    "set_default_version",
    "verify_manifest",
    "version_dirs",
    "write_atomic",
    "write_flags_text",
    "write_manifest",
    "write_model_config",
]

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetFlagsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFlagsResponse(_message.Message):
    __slots__ = ("flags_json", "path", "revision", "last_error")
    FLAGS_JSON_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    flags_json: str
    path: str
    revision: int
    last_error: str
    def __init__(self, flags_json: _Optional[str] = ..., path: _Optional[str] = ..., revision: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class SetFlagsRequest(_message.Message):
    __slots__ = ("flags_json",)
    FLAGS_JSON_FIELD_NUMBER: _ClassVar[int]
    flags_json: str
    def __init__(self, flags_json: _Optional[str] = ...) -> None: ...

class SetFlagsResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("version", "sha256", "variants")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    version: str
    sha256: str
    variants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., sha256: _Optional[str] = ..., variants: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelVersions(_message.Message):
    __slots__ = ("model", "versions", "default_version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    default_version: str
    def __init__(self, model: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ..., default_version: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersions]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersions, _Mapping]]] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("model", "candidate", "baseline", "spec", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    candidate: str
    baseline: str
    spec: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., candidate: _Optional[str] = ..., baseline: _Optional[str] = ..., spec: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetRolloutReportRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("model", "id", "baseline", "candidate", "state", "reason", "phase", "step", "steps", "weight", "needed", "e_value", "threshold", "started", "updated", "started_by", "record_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NEEDED_FIELD_NUMBER: _ClassVar[int]
    E_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    id: str
    baseline: str
    candidate: str
    state: str
    reason: str
    phase: str
    step: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    weight: int
    needed: int
    e_value: float
    threshold: float
    started: str
    updated: str
    started_by: str
    record_json: str
    def __init__(self, model: _Optional[str] = ..., id: _Optional[str] = ..., baseline: _Optional[str] = ..., candidate: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., phase: _Optional[str] = ..., step: _Optional[int] = ..., steps: _Optional[_Iterable[int]] = ..., weight: _Optional[int] = ..., needed: _Optional[int] = ..., e_value: _Optional[float] = ..., threshold: _Optional[float] = ..., started: _Optional[str] = ..., updated: _Optional[str] = ..., started_by: _Optional[str] = ..., record_json: _Optional[str] = ...) -> None: ...

class RolloutReport(_message.Message):
    __slots__ = ("report_json",)
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    report_json: str
    def __init__(self, report_json: _Optional[str] = ...) -> None: ...

class GetModelCardRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetModelCardResponse(_message.Message):
    __slots__ = ("model", "version", "markdown")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    markdown: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., markdown: _Optional[str] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Platform(_message.Message):
    __slots__ = ("Architecture", "OS", "Variant", "OSVersion", "OSFeatures")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    OSVERSION_FIELD_NUMBER: _ClassVar[int]
    OSFEATURES_FIELD_NUMBER: _ClassVar[int]
    Architecture: str
    OS: str
    Variant: str
    OSVersion: str
    OSFeatures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, Architecture: _Optional[str] = ..., OS: _Optional[str] = ..., Variant: _Optional[str] = ..., OSVersion: _Optional[str] = ..., OSFeatures: _Optional[_Iterable[str]] = ...) -> None: ...

class SourceInfo(_message.Message):
    __slots__ = ("filename", "data", "language")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    data: bytes
    language: str
    def __init__(self, filename: _Optional[str] = ..., data: _Optional[bytes] = ..., language: _Optional[str] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("line", "character")
    LINE_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_FIELD_NUMBER: _ClassVar[int]
    line: int
    character: int
    def __init__(self, line: _Optional[int] = ..., character: _Optional[int] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: Position
    end: Position
    def __init__(self, start: _Optional[_Union[Position, _Mapping]] = ..., end: _Optional[_Union[Position, _Mapping]] = ...) -> None: ...

class ProgressGroup(_message.Message):
    __slots__ = ("id", "name", "weak")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEAK_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    weak: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., weak: _Optional[bool] = ...) -> None: ...

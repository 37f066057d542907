from __future__ import annotations

import grpc

from gateway.core import errors
from gateway.core.errors import ErrorKind, GatewayError
from gateway.protocol.status import STATUS, grpc_code, http_status


def _subclasses(cls: type[GatewayError]) -> list[type[GatewayError]]:
    out: list[type[GatewayError]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_every_error_kind_is_mapped() -> None:
    assert set(STATUS) == set(ErrorKind)


def test_every_error_class_maps_to_an_error_status() -> None:
    classes: list[type[GatewayError]] = [GatewayError, *_subclasses(GatewayError)]
    assert errors.BackendError in classes
    for cls in classes:
        assert 400 <= http_status(cls.kind) <= 599, cls
        assert grpc_code(cls.kind) not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN), cls


def test_the_decided_codes() -> None:
    def pair(kind: ErrorKind) -> tuple[int, grpc.StatusCode]:
        return http_status(kind), grpc_code(kind)

    assert pair(ErrorKind.INVALID_ARGUMENT) == (400, grpc.StatusCode.INVALID_ARGUMENT)
    assert pair(ErrorKind.NOT_FOUND) == (404, grpc.StatusCode.NOT_FOUND)
    assert pair(ErrorKind.NOT_READY) == (503, grpc.StatusCode.UNAVAILABLE)
    assert pair(ErrorKind.PAYLOAD_TOO_LARGE) == (413, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert pair(ErrorKind.OVERLOADED) == (429, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert pair(ErrorKind.DEADLINE_EXCEEDED) == (504, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert pair(ErrorKind.PERMISSION_DENIED) == (403, grpc.StatusCode.PERMISSION_DENIED)
    assert pair(ErrorKind.UNSUPPORTED) == (501, grpc.StatusCode.UNIMPLEMENTED)
    assert pair(ErrorKind.UNAVAILABLE) == (503, grpc.StatusCode.UNAVAILABLE)
    assert pair(ErrorKind.INTERNAL) == (500, grpc.StatusCode.INTERNAL)

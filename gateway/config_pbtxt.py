"""Triton's ``config.pbtxt``, parsed with Triton's own schema (``tritonclient``'s ``model_config_pb2``),
into the core's ``ModelConfig``; and the configuration's JSON form, as Triton's config endpoint answers it.
``gateway.repository`` reads the files; this module knows the format.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as mc

from gateway.core.config import (
    DynamicBatching,
    ModelConfig,
    QueuePolicy,
    TensorConfig,
    TimeoutAction,
    VersionPolicy,
    VersionPolicyKind,
    datatype_from_triton,
)
from gateway.core.selection.slo import config_default_slo_ms


class ConfigError(ValueError):
    """A config.pbtxt the gateway cannot serve; the message names the file and the field."""


def parse_config(text: bytes, name: str, source: str) -> mc.ModelConfig:
    """The configuration of model ``name`` (its directory's name, which a ``name`` field must match)."""
    try:
        proto = text_format.Parse(text.decode(), mc.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: not a Triton model configuration ({e})") from None
    if proto.name and proto.name != name:
        raise ConfigError(f"{source}: name {proto.name!r} does not match its directory {name!r}")
    proto.name = name
    return proto


def config_from_proto(proto: mc.ModelConfig, source: str = "<config>") -> ModelConfig:
    try:
        config = ModelConfig(
            name=proto.name,
            platform=proto.platform,
            backend=proto.backend,
            max_batch_size=proto.max_batch_size,
            inputs=tuple(_tensor(t) for t in proto.input),
            outputs=tuple(_tensor(t) for t in proto.output),
            dynamic_batching=_batching(proto.dynamic_batching)
            if proto.HasField("dynamic_batching")
            else None,
            version_policy=_version_policy(proto.version_policy),
            instance_count=max(1, sum(g.count or 1 for g in proto.instance_group)),
            default_model_filename=proto.default_model_filename,
            parameters={k: v.string_value for k, v in proto.parameters.items()},
        )
        config_default_slo_ms(config)  # a bad default SLO refuses the model, not its requests
        return config
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None


def _tensor(t: mc.ModelInput | mc.ModelOutput) -> TensorConfig:
    if t.HasField("reshape"):
        raise ValueError(f"tensor {t.name!r} uses 'reshape', which the gateway does not support")
    return TensorConfig(
        name=t.name,
        datatype=datatype_from_triton(mc.DataType.Name(t.data_type)),
        dims=tuple(int(d) for d in t.dims),
        optional=bool(getattr(t, "optional", False)),
    )


def _queue_policy(p: mc.ModelQueuePolicy) -> QueuePolicy:
    return QueuePolicy(
        timeout_action=TimeoutAction(mc.ModelQueuePolicy.TimeoutAction.Name(p.timeout_action)),
        default_timeout_us=p.default_timeout_microseconds,
        allow_timeout_override=p.allow_timeout_override,
        max_queue_size=p.max_queue_size,
    )


def _batching(db: mc.ModelDynamicBatching) -> DynamicBatching:
    if db.priority_levels and not 0 <= db.default_priority_level <= db.priority_levels:
        raise ValueError(
            f"default_priority_level {db.default_priority_level} is outside priority_levels "
            f"1..{db.priority_levels}"
        )
    return DynamicBatching(
        preferred_batch_sizes=tuple(db.preferred_batch_size),
        max_queue_delay_us=db.max_queue_delay_microseconds,
        priority_levels=db.priority_levels,
        default_priority_level=db.default_priority_level,
        default_queue_policy=_queue_policy(db.default_queue_policy),
        priority_queue_policy={int(k): _queue_policy(v) for k, v in db.priority_queue_policy.items()},
    )


def _version_policy(vp: mc.ModelVersionPolicy) -> VersionPolicy:
    choice = vp.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(VersionPolicyKind.ALL)
    if choice == "specific":
        return VersionPolicy(VersionPolicyKind.SPECIFIC, versions=tuple(int(v) for v in vp.specific.versions))
    return VersionPolicy(VersionPolicyKind.LATEST, num_versions=max(1, vp.latest.num_versions))


def config_to_json(proto: Message) -> dict[str, Any]:
    """Triton's JSON form: protobuf field names, defaults included, 64-bit integers as numbers."""
    data = json_format.MessageToDict(
        proto, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    # The stubs type DESCRIPTOR as the Python or the upb class; under upb the two are one class at runtime.
    return _int64_as_numbers(cast(Descriptor, proto.DESCRIPTOR), data)


_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _int64_as_numbers(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name in data:
            data[field.name] = _convert(field, data[field.name])
    return data


def _convert(field: FieldDescriptor, value: Any) -> Any:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        inner = message.fields_by_name["value"]
        return {k: _scalar(inner, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scalar(field, v) for v in value]
    return _scalar(field, value)


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return _int64_as_numbers(field.message_type, value)
    return int(value) if field.type in _INT64 else value

"""JSON Schemas of the event types and an AsyncAPI 3.0 document, generated from the code.

The step declarations (``choreo.Step``) and the topic declaration (``lisa_choreo.registry``) are
the only source: nothing here is kept by hand, so ``schemas/`` cannot say something the services
do not do. Output is deterministic (sorted keys, stable order, no timestamps) so a drift check can
compare bytes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from choreo.events import Event
from choreo.settings import KafkaSettings
from choreo.step import Step
from choreo.topology import DLQ_SUFFIX, TopicSpec, Topology, dead_letter_topic

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic emits
# Absolute, location-free ids: the schemas are identified by event type, wherever they are served.
SCHEMA_ID_PREFIX = "urn:lisa-choreo:schema:"
ASYNCAPI_FILE = "asyncapi.json"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEAD_LETTER = "dead-letter"
HEADERS = "CloudEventsKafkaHeaders"
DLQ_HEADERS = "DeadLetterHeaders"

# CloudEvents 1.0 Kafka binary mode as choreo.codec writes it. Header values are UTF-8 bytes on
# the wire; the schema describes their text.
CLOUDEVENTS_HEADERS: dict[str, dict[str, Any]] = {
    "ce_specversion": {"const": "1.0", "description": "CloudEvents spec version"},
    "ce_id": {
        "description": "event id; outputs of a step derive it from the input id, the step and "
        "the output index, so a redelivered input reproduces the same id"
    },
    "ce_type": {"description": "event type, e.g. lisa.segment.raw.v1: selects the body schema"},
    "ce_source": {"description": "the service (step) or tool that emitted the event"},
    "ce_subject": {"description": "segment id (source id on the catalogue); also the Kafka key"},
    "ce_time": {"format": "date-time", "description": "when the event was made (RFC 3339)"},
    "ce_causationid": {"description": "id of the parent event; absent on a root event"},
    "ce_correlationid": {
        "description": "id of the root event this one descends from (lineage that outlives traces)"
    },
    "content-type": {"const": "application/json", "description": "media type of the body"},
    "traceparent": {
        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        "description": "W3C trace context of the producing span",
    },
    "tracestate": {"description": "W3C trace state, when the producer has one"},
}
# What choreo.codec.decode refuses a record without (it always writes ce_time and lineage too).
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source")

# choreo.deadletter.DeadLetters adds these to the original record's headers.
DEAD_LETTER_HEADERS: dict[str, str] = {
    "dlq_reason": "stable reason code (schema-invalid, checksum-mismatch, handler-error...)",
    "dlq_error_type": "exception class name",
    "dlq_error_message": "exception message (at most 2000 characters)",
    "dlq_service": "the step that gave up on the record",
    "dlq_topic": "the topic the record was read from (without the deployment prefix)",
    "dlq_partition": "its partition",
    "dlq_offset": "its offset",
    "dlq_attempts": "how many times it was tried",
    "dlq_time": "when it was dead-lettered (RFC 3339)",
}


def participants(topo: Topology) -> list[tuple[Step, str]]:
    """Who talks over the topics, with its role: ``step`` (consumes in its group, dead-letters
    what it cannot process), then, if the deployment declares them
    (``lisa_choreo.registry.Deployment``), ``observer`` (reads in its own group, no dead letters:
    the flow monitor) and ``client`` (reads without a group: the campaign worker)."""
    return (
        [(s, "step") for s in topo.steps]
        + [(s, "observer") for s in getattr(topo, "observers", ())]
        + [(s, "client") for s in getattr(topo, "clients", ())]
    )


def event_types(topo: Topology) -> dict[str, type[Event]]:
    """Every event type anyone consumes or produces, by ``ce_type`` (sorted)."""
    found: dict[str, type[Event]] = {}
    for step, _ in participants(topo):
        for decl in [*step.consumes, *step.produces]:
            for model in decl.types:
                other = found.setdefault(model.ce_type, model)
                if other is not model:
                    claimants = f"{_qualname(other)}, {_qualname(model)}"
                    raise ValueError(f"two models claim {model.ce_type!r}: {claimants}")
    return dict(sorted(found.items()))


def _qualname(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _doc(model: type) -> str | None:
    """The model's own docstring (not an inherited one: it would describe the base class)."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else None


def event_schema(model: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event body, identified by its ``ce_type``."""
    schema = model.model_json_schema()
    schema.pop("description", None)
    if doc := _doc(model):
        schema["description"] = doc
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID_PREFIX + model.ce_type,
        **schema,
        "title": model.ce_type,
    }


def _topic_types(topo: Topology) -> dict[str, list[str]]:
    """Topic -> the ce_types that travel on it (as any step declares them), sorted."""
    out: dict[str, set[str]] = {t.name: set() for t in topo.all_topics()}
    for step, _ in participants(topo):
        for decl in [*step.consumes, *step.produces]:
            out[decl.topic].update(m.ce_type for m in decl.types)
    return {topic: sorted(types) for topic, types in out.items()}


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _component_schemas(types: Mapping[str, type[Event]]) -> dict[str, Any]:
    """Bodies and the models they nest, referenced as ``#/components/schemas/<name>``.

    Event bodies are keyed by ``ce_type`` like their files; nested models keep their class name
    (pydantic disambiguates clashes)."""
    template = "#/components/schemas/{model}"
    refs, defs = models_json_schema(
        [(m, "validation") for m in types.values()], ref_template=template
    )
    defs = defs.get("$defs", {})
    renames = {
        refs[(m, "validation")]["$ref"].rsplit("/", 1)[1]: ce_type for ce_type, m in types.items()
    }
    schemas: dict[str, Any] = {}
    for name, schema in defs.items():
        key = renames.get(name, name)
        if key in renames.values():
            model = types[key]
            schema.pop("description", None)
            if doc := _doc(model):
                schema["description"] = doc
            schema["title"] = key
        schemas[key] = _rewrite_refs(
            schema, {template.format(model=a): template.format(model=b) for a, b in renames.items()}
        )
    return schemas


def _rewrite_refs(node: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: mapping.get(v, v)
            if k == "$ref" and isinstance(v, str)
            else _rewrite_refs(v, mapping)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v, mapping) for v in node]
    return node


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode (UTF-8 header values), "
        "lineage extensions and W3C trace context. The runtime always writes ce_time, "
        "ce_correlationid and content-type; consumers refuse a record without the required ones.",
        "properties": {name: {"type": "string", **s} for name, s in CLOUDEVENTS_HEADERS.items()},
        "required": list(REQUIRED_HEADERS),
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original record's headers (CloudEvents ones when it had them), plus "
        "why and where it failed.",
        "properties": {
            **{
                name: {"type": "string", "description": d}
                for name, d in DEAD_LETTER_HEADERS.items()
            },
            **{name: {"type": "string", **s} for name, s in CLOUDEVENTS_HEADERS.items()},
        },
        "required": sorted(DEAD_LETTER_HEADERS),
    }


def _kafka_key() -> dict[str, Any]:
    return {
        "kafka": {
            "bindingVersion": KAFKA_BINDING_VERSION,
            "key": {
                "type": "string",
                "description": "the subject (segment or source id): one segment, or one source, "
                "stays on one partition down the chain",
            },
        }
    }


def _message(ce_type: str, model: type[Event]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": ce_type,
        "contentType": "application/json",
        "headers": {
            "allOf": [
                _ref("components", "schemas", HEADERS),
                {"properties": {"ce_type": {"const": ce_type}}},
            ]
        },
        "payload": _ref("components", "schemas", ce_type),
        "correlationId": _ref("components", "correlationIds", "lineage"),
        "bindings": _kafka_key(),
    }
    if doc := _doc(model):
        message["summary"] = doc.split("\n\n")[0].replace("\n", " ")
    return message


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "dead letter",
        "summary": "An input a step could not process, untouched, with the reason in headers.",
        "description": "Key and body are the original record's, byte for byte: they may be "
        "invalid (that can be why the record is here). `lisa-choreo dlq` lists and replays them.",
        "headers": _ref("components", "schemas", DLQ_HEADERS),
        "payload": {"description": "the original record's value, unchanged"},
        "bindings": _kafka_key(),
    }


def _channel(spec: TopicSpec, types: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": ["compact" if spec.compacted else "delete"]}
    if not spec.compacted:
        config["retention.ms"] = spec.retention_ms
    if spec.name.endswith(DLQ_SUFFIX):
        messages = {DEAD_LETTER: _ref("components", "messages", DEAD_LETTER)}
    else:
        messages = {t: _ref("components", "messages", t) for t in types}
    channel: dict[str, Any] = {
        "address": spec.name,
        "title": spec.name,
        "messages": messages,
        "bindings": {
            "kafka": {
                "bindingVersion": KAFKA_BINDING_VERSION,
                "partitions": spec.partitions,
                "topicConfiguration": config,
            }
        },
    }
    if spec.description:
        channel["description"] = spec.description
    return channel


def _operations(topo: Topology) -> dict[str, Any]:
    """Per step: receive from each consumed topic, send to each produced one and to the dead-letter
    topic of each consumed one (the runner does that for every step)."""
    ops: dict[str, Any] = {}

    def op(
        step_name: str,
        action: str,
        topic: str,
        messages: Iterable[str],
        summary: str,
        group: bool = True,
    ) -> None:
        body: dict[str, Any] = {
            "action": action,
            "channel": _ref("channels", topic),
            "messages": [_ref("channels", topic, "messages", m) for m in messages],
            "summary": summary,
            "tags": [{"name": step_name}],
        }
        if action == "receive" and group:
            body["bindings"] = {
                "kafka": {
                    "bindingVersion": KAFKA_BINDING_VERSION,
                    "groupId": {"type": "string", "enum": [step_name]},
                }
            }
        ops[f"{step_name}.{action}.{topic}"] = body

    for step, role in participants(topo):
        what = step.description or step.name
        for c in step.consumes:
            types = sorted(m.ce_type for m in c.types)
            op(step.name, "receive", c.topic, types, what, group=role != "client")
            if role != "step":
                continue
            op(
                step.name,
                "send",
                dead_letter_topic(c.topic),
                [DEAD_LETTER],
                f"inputs of {c.topic} that {step.name} could not process",
            )
        for p in step.produces:
            op(step.name, "send", p.topic, sorted(m.ce_type for m in p.types), what)
    return ops


def _version() -> str:
    try:
        return metadata.version("lisa-choreo")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def asyncapi(topo: Topology) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the whole choreography: one channel per topic (dead-letter
    topics included), the operations of every step, the event bodies as components."""
    types = event_types(topo)
    topic_types = _topic_types(topo)
    bootstrap = KafkaSettings.model_fields["bootstrap_servers"].default  # not the environment's
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "lisa-choreo",
            "version": _version(),
            "description": "Event-driven LISA gravitational-wave pipeline: step services over "
            "Kafka, no coordinator. Generated by `lisa-choreo schemas` from the services' "
            "declarations; do not edit. Events are CloudEvents 1.0 in Kafka binary mode (ce_* "
            "headers, JSON body). Topic and consumer-group names carry the deployment's "
            "LISA_KAFKA_TOPIC_PREFIX (empty by default).",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": bootstrap,
                "protocol": "kafka",
                "description": "the local broker of `lisa-choreo stack up`; elsewhere "
                "LISA_KAFKA_BOOTSTRAP_SERVERS",
            }
        },
        "channels": {
            spec.name: _channel(spec, topic_types[spec.name]) for spec in topo.all_topics()
        },
        "operations": _operations(topo),
        "components": {
            "schemas": {
                **_component_schemas(types),
                HEADERS: _headers_schema(),
                DLQ_HEADERS: _dead_letter_headers_schema(),
            },
            "messages": {
                **{t: _message(t, m) for t, m in types.items()},
                DEAD_LETTER: _dead_letter_message(),
            },
            "correlationIds": {
                "lineage": {
                    "description": "the root event's id: every event descending from one raw "
                    "segment carries it",
                    "location": "$message.header#/ce_correlationid",
                }
            },
        },
    }


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(topo: Topology) -> dict[str, str]:
    """File name -> content of everything ``schemas/`` must hold."""
    files = {f"{t}.json": dumps(event_schema(m)) for t, m in event_types(topo).items()}
    files[ASYNCAPI_FILE] = dumps(asyncapi(topo))
    return files


@dataclass(frozen=True)
class Drift:
    name: str
    state: str  # changed | missing | stale

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


def _owned(directory: Path) -> Iterator[Path]:
    """Files of ``directory`` that generation owns (anything else there is left alone)."""
    if directory.is_dir():
        yield from sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".json")


def drift(directory: Path, files: Mapping[str, str]) -> list[Drift]:
    """How ``directory`` differs from what the code generates."""
    out = []
    for name, text in sorted(files.items()):
        path = directory / name
        if not path.exists():
            out.append(Drift(name, "missing"))
        elif path.read_text(encoding="utf-8") != text:
            out.append(Drift(name, "changed"))
    out += [Drift(p.name, "stale") for p in _owned(directory) if p.name not in files]
    return out


def write(directory: Path, files: Mapping[str, str]) -> list[Drift]:
    """Make ``directory`` hold exactly the generated files; returns what was changed."""
    changes = drift(directory, files)
    directory.mkdir(parents=True, exist_ok=True)
    for d in changes:
        path = directory / d.name
        if d.state == "stale":
            path.unlink()
        else:
            path.write_text(files[d.name], encoding="utf-8")
    return changes

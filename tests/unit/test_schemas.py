"""``schemas/`` is what the code generates, and the AsyncAPI document is valid AsyncAPI 3.0.

The drift test is the guard DESIGN.md asks for: a model or a step declaration that changes
without ``lisa-choreo schemas`` being run fails here, not in a consumer of the contract.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from choreo import Envelope, codec, schemagen
from choreo.store import ArrayRef
from lisa_choreo.registry import topology
from lisa_pipeline.events import CandidatesGB, CatalogSource, GBCandidate, SegmentTiming

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ASYNCAPI_SCHEMA = Path(__file__).parents[1] / "data" / "asyncapi-3.0.0.schema.json"
REF = ArrayRef(uri="file:///s/x.h5", sha256="a" * 64, size_bytes=1, shapes={"f": [3]})
SAMPLES = [
    CatalogSource(
        source_id="gb-0001",
        frequency_hz=1.94e-3,
        frequency_bin=3,
        sigma_frequency_hz=1e-8,
        stacked_statistic=120.0,
        stacked_snr=10.4,
        fap=1e-9,
        n_segments=3,
        n_estimates=2,
        mean_amplitude=None,
        contributing_segments=["s-0", "s-1", "s-2"],
    ),
    CandidatesGB(
        timing=SegmentTiming(segment_id="s-0", t0=0.0, dt=5.0, n_samples=100),
        statistic=REF,
        fmin_hz=1e-4,
        fmax_hz=2e-2,
        n_independent_bins=10,
        fap=0.01,
        threshold=20.0,
        candidates=[GBCandidate(frequency_hz=1e-3, bin=3, statistic=30.0, snr=5.1, fap=1e-4)],
        conditioned=REF,
        psd=REF,
    ),
]


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return schemagen.generate(topology())


@pytest.fixture(scope="module")
def document(generated: dict[str, str]) -> dict[str, Any]:
    return json.loads(generated[schemagen.ASYNCAPI_FILE])


def test_checked_in_schemas_match_the_code(generated: dict[str, str]) -> None:
    drifted = schemagen.drift(SCHEMAS, generated)
    assert not drifted, (
        f"schemas/ differs from the code: {', '.join(map(str, drifted))}; "
        "run `lisa-choreo schemas` and commit the result"
    )


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    assert schemagen.generate(topology()) == generated


def test_asyncapi_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    validator = Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors)
    # the validator does see mistakes (a vendored schema that accepted anything would pass above)
    broken = copy.deepcopy(document)
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
    assert not validator.is_valid(broken)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_of_the_asyncapi_document_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)


def test_asyncapi_covers_every_topic_service_and_event_type(document: dict[str, Any]) -> None:
    topo = topology()
    assert set(document["channels"]) == {t.name for t in topo.all_topics()}
    assert {c["address"] for c in document["channels"].values()} == set(document["channels"])
    for step in topo.steps:
        for c in step.consumes:
            op = document["operations"][f"{step.name}.receive.{c.topic}"]
            assert op["action"] == "receive"
            assert op["bindings"]["kafka"]["groupId"]["enum"] == [step.name]
            assert {m.ce_type for m in c.types} == {
                r["$ref"].rsplit("/", 1)[1] for r in op["messages"]
            }
            assert f"{step.name}.send.{c.topic}.dlq" in document["operations"]
        for p in step.produces:
            op = document["operations"][f"{step.name}.send.{p.topic}"]
            assert {m.ce_type for m in p.types} == {
                r["$ref"].rsplit("/", 1)[1] for r in op["messages"]
            }
    for ce_type in schemagen.event_types(topo):
        message = document["components"]["messages"][ce_type]
        assert message["payload"] == {"$ref": f"#/components/schemas/{ce_type}"}
        assert message["headers"]["allOf"][1]["properties"]["ce_type"]["const"] == ce_type


def test_headers_describe_what_the_codec_and_dead_letters_write(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    ce = schemas[schemagen.HEADERS]
    env = Envelope(**{**Envelope.root(SAMPLES[0], source="t", subject="s").__dict__})
    written = {
        name for name, _ in codec.encode(Envelope(**{**env.__dict__, "causation_id": "p"}))[2]
    }
    assert written | {"traceparent", "tracestate"} == set(ce["properties"])
    assert set(ce["required"]) <= written

    from aiokafka import ConsumerRecord

    from choreo.deadletter import DeadLetters, Failure

    class Capture:
        topic_prefix = ""
        max_request_bytes = 1_048_576
        headers: ClassVar[list[tuple[str, bytes]]] = []

        async def send_raw(self, topic: str, key: Any, value: Any, headers: list) -> None:
            Capture.headers = headers

    record = ConsumerRecord("in", 0, 1, 0, 0, None, b"x", None, 0, 1, [("ce_id", b"1")])
    asyncio.run(DeadLetters(Capture(), "svc").send(record, Failure("r", ValueError("e"))))  # type: ignore[arg-type]
    dlq = {name for name, _ in Capture.headers if name.startswith("dlq_")}
    assert dlq == set(schemas[schemagen.DLQ_HEADERS]["required"])


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.ce_type)
def test_real_events_validate_against_both_forms_of_their_schema(
    event: Any, generated: dict[str, str], document: dict[str, Any]
) -> None:
    body = json.loads(event.model_dump_json())
    schema = json.loads(generated[f"{event.ce_type}.json"])
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == event.ce_type
    assert schema["$id"].endswith(event.ce_type)
    Draft202012Validator(schema).validate(body)
    assert not Draft202012Validator(schema).is_valid({**body, "unexpected": 1})
    # the AsyncAPI copy, whose nested models live in components.schemas
    registry = Registry().with_resource("urn:doc", Resource(document, DRAFT202012))
    payload = Draft202012Validator(
        {"$ref": f"urn:doc#/components/schemas/{event.ce_type}"}, registry=registry
    )
    payload.validate(body)
    assert not payload.is_valid({**body, "unexpected": 1})


def test_check_lists_drifted_files_and_write_repairs_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lisa_choreo.cli import main

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = main(["schemas", "--dir", str(tmp_path), *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    assert cli().returncode == 0
    assert cli("--check").returncode == 0
    (tmp_path / "lisa.catalog.source.v1.json").write_text("{}\n")
    (tmp_path / "lisa.retired.v1.json").write_text("{}\n")
    (tmp_path / schemagen.ASYNCAPI_FILE).unlink()
    (tmp_path / "README.md").write_text("not generated, left alone\n")
    result = cli("--check")
    assert result.returncode == 1
    assert "lisa.catalog.source.v1.json (changed)" in result.stdout
    assert "lisa.retired.v1.json (stale)" in result.stdout
    assert f"{schemagen.ASYNCAPI_FILE} (missing)" in result.stdout
    assert "README.md" not in result.stdout
    assert cli().returncode == 0
    assert cli("--check").returncode == 0
    assert not (tmp_path / "lisa.retired.v1.json").exists()
    assert (tmp_path / "README.md").exists()

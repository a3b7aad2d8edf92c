"""Creating and listing ACLs over Kafka's admin protocol, with aiokafka's connection.

aiokafka 0.14's admin client has no ``create_acls`` (aiokafka#955), but its protocol module
defines the CreateAcls and DescribeAcls structs, versions 0 and 1. Kafka 4.1 accepts CreateAcls
and DescribeAcls from version 1 (KIP-896 removed version 0) up to 3; version 1 is the newest that
is not a "flexible" (compact, tagged-field) encoding, and its fields are those of later versions.
aiokafka's ``CreateAclsRequest`` builder sends one ACL per request; ``_CreateAcls`` below sends
all of them in one request with aiokafka's own v1 struct, and aiokafka's ``DescribeAclsRequest``
is used as it is (it negotiates v1 with a 4.1 broker).

Why not kafka-python's ``KafkaAdminClient.create_acls``: a second Kafka client library (its own
connection, SASL and TLS code, run in a thread) in the process for two requests whose structs the
installed client already has; this module reuses the same ``KafkaSettings.client_options()``
as every other client of the project.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request

from choreo.settings import KafkaSettings
from lisa_choreo.security.acls import (
    AclBinding,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)

# Filter codes of DescribeAcls (org.apache.kafka.common.acl / resource): ANY matches every value.
_ANY = 1


class AclError(RuntimeError):
    """The broker refused one or more ACL requests (the error names are in the message)."""


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """CreateAcls v1 carrying many creations (aiokafka's builder carries one)."""

    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self._bindings = bindings

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [
                (
                    int(b.resource_type),
                    b.resource_name,
                    int(b.pattern_type),
                    b.principal,
                    b.host,
                    int(b.operation),
                    int(b.permission),
                )
                for b in self._bindings
            ]
        )


async def _send(settings: KafkaSettings, request: Request, timeout_ms: int = 15_000):
    client = AIOKafkaClient(
        **settings.client_options(), client_id="lisa-choreo-acl", request_timeout_ms=timeout_ms
    )
    try:
        await client.bootstrap()
        return await client.send(client.get_random_node(), request)
    finally:
        await client.close()


async def create_acls(settings: KafkaSettings, bindings: Sequence[AclBinding]) -> int:
    """Create the bindings (an existing one is left as it is: creation is idempotent). Returns
    how many were sent; raises ``AclError`` naming each refused binding."""
    if not bindings:
        return 0
    response = await _send(settings, _CreateAcls(list(bindings)))
    errors = [
        f"{b.describe()}: {for_code(code).__name__}{f' ({message})' if message else ''}"
        for b, (code, message) in zip(bindings, response.creation_responses, strict=True)
        if code
    ]
    if errors:
        raise AclError("ACLs refused: " + "; ".join(errors))
    return len(bindings)


async def describe_acls(settings: KafkaSettings, principal: str | None = None) -> list[AclBinding]:
    """The broker's bindings (of one principal, e.g. ``User:condition``, or all), sorted."""
    request = DescribeAclsRequest(
        resource_type=_ANY,
        resource_name=None,  # type: ignore[arg-type]  # null: any name
        resource_pattern_type_filter=_ANY,
        principal=principal,  # type: ignore[arg-type]
        host=None,  # type: ignore[arg-type]
        operation=_ANY,
        permission_type=_ANY,
    )
    response = await _send(settings, request)
    if response.error_code:
        raise AclError(
            f"DescribeAcls refused: {for_code(response.error_code).__name__} "
            f"{response.error_message or ''}".strip()
        )
    out = []
    for resource_type, name, pattern, acls in response.resources:
        for user, host, operation, permission in acls:
            out.append(
                AclBinding(
                    user,
                    ResourceType(resource_type),
                    name,
                    PatternType(pattern),
                    Operation(operation),
                    Permission(permission),
                    host,
                )
            )
    return sorted(out)

"""Toy event types."""

from typing import ClassVar

from pydantic import Field

from choreo import Event
from choreo.topology import TopicSpec, Topology

NUMBERS = "toy.numbers"
SQUARES = "toy.squares"
DESCRIPTIONS = "toy.descriptions"


class Number(Event):
    ce_type: ClassVar[str] = "lisa.toy.number.v1"
    value: int = Field(description="an integer to square")


class Square(Event):
    ce_type: ClassVar[str] = "lisa.toy.square.v1"
    value: int
    square: int


class Description(Event):
    ce_type: ClassVar[str] = "lisa.toy.description.v1"
    value: int
    text: str


TOPICS = (
    TopicSpec(NUMBERS, partitions=3, description="toy chain input"),
    TopicSpec(SQUARES, partitions=3, description="toy chain middle"),
    TopicSpec(DESCRIPTIONS, partitions=3, description="toy chain output"),
)


def topology() -> Topology:
    """The toy chain's own topology: its topics are created by the tests only."""
    from tests.toy import describe, square

    return Topology(topics=TOPICS, steps=(square.step, describe.step))

"""Toy event types."""

from typing import ClassVar

from pydantic import Field

from choreo import Event

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

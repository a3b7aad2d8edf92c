"""Toy step 2: describes a square in words."""

from choreo import Consumes, Emit, Envelope, Produces, Step
from services.toy.events import DESCRIPTIONS, SQUARES, Description, Square

step = Step(
    "toy-describe",
    consumes=[Consumes(SQUARES, Square)],
    produces=[Produces(DESCRIPTIONS, Description)],
    description="describes squares",
)


@step.handler
def describe(event: Envelope[Square]) -> list[Emit]:
    d = event.data
    return [Emit(DESCRIPTIONS, Description(value=d.value, text=f"{d.value}² = {d.square}"))]

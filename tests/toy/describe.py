"""Toy step 2: describes a square in words."""

import sys

from choreo import Consumes, Emit, Envelope, Produces, Step
from choreo.runner import run_step
from tests.toy.events import DESCRIPTIONS, SQUARES, Description, Square

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


def main() -> int:
    return run_step(step)


if __name__ == "__main__":
    sys.exit(main())

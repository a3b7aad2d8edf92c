"""Toy step 1: squares a number. ``LISA_TOY_DELAY_S`` slows it down for shutdown tests."""

import os
import sys
import time

from choreo import Consumes, Emit, Envelope, Produces, Step
from choreo.runner import run_step
from tests.toy.events import NUMBERS, SQUARES, Number, Square

step = Step(
    "toy-square",
    consumes=[Consumes(NUMBERS, Number)],
    produces=[Produces(SQUARES, Square)],
    description="squares numbers",
)
_DELAY_S = float(os.environ.get("LISA_TOY_DELAY_S", "0"))


@step.handler
def square(event: Envelope[Number]) -> list[Emit]:
    if _DELAY_S:
        time.sleep(_DELAY_S)
    n = event.data.value
    return [Emit(SQUARES, Square(value=n, square=n * n))]


def main() -> int:
    return run_step(step)


if __name__ == "__main__":
    sys.exit(main())

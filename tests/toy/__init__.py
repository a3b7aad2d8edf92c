"""Two toy steps that prove the runtime end to end without any physics.

``toy.numbers`` -> square -> ``toy.squares`` -> describe -> ``toy.descriptions``
"""

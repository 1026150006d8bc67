"""A sibling module imported by nets.py with a plain ``from blocks import ...`` (as official arch files do)."""

from torch import nn


class ConvAct(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())

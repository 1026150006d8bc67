from torch import nn


def conv3(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1)

from torch import nn


class Unrelated(nn.Module):
    pass

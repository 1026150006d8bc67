"""Old import path of the CKA maths, kept for scripts written against it (the engine moved to
:mod:`probe.methods.cka` and :mod:`probe.methods.hsic`). New code imports from there."""

from probe.methods.cka import *  # noqa: F401,F403
from probe.methods.cka import cka  # noqa: F401

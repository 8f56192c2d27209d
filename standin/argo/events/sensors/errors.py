"""The two ways an evaluation stops: the simulator cannot tell (Unsupported), or Argo would fail (GoError)."""


class Unsupported(Exception):
    """The Sensor uses something this simulator does not implement: refuse loudly."""


class GoError(Exception):
    """An error Argo Events itself would hit (bad template, bad regexp, missing key...)."""

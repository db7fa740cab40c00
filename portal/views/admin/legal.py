"""Console: legal (being built; see issue 10)."""
from . import bp  # noqa: F401

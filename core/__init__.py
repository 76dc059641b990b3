"""tpushell.core: the compiler and simulator core (no UI). See DESIGN.md for the data flow."""
from .errors import TpuError
from .session import Session

__all__ = ["Session", "TpuError"]

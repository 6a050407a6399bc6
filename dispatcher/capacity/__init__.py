"""The capacity semaphore: which account runs a generation, and who waits.

One Lua script per operation decides atomically inside Redis (accounts, leases,
waiting lines by priority and tenant, random choice among accounts with room); `Capacity` is the
thin Python face. `CapacityModel` is the pure-Python reference used by tests.
"""

from .model import CapacityModel
from .policy import DEFAULT_PRIORITY, MAX_PRIORITY, check_priority, check_tenant
from .semaphore import AcquireResult, Admission, Capacity

__all__ = ["AcquireResult", "Admission", "Capacity", "CapacityModel", "DEFAULT_PRIORITY", "MAX_PRIORITY",
           "check_priority", "check_tenant"]

"""Independent reference implementations used by pruneviz's tests and benchmarks.

They are written from the papers' formulas as directly as possible (loops, dense solves, numpy), to be
slow and obviously right; the library's fast versions are checked against them.
"""

from pruneviz.testing.references import sequential_obs_reference, wanda_reference

__all__ = ["sequential_obs_reference", "wanda_reference"]

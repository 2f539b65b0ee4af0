"""
Test-suite-wide configuration: Hypothesis profiles.

C{HYPOTHESIS_PROFILE=ci} (set by C{.ci/test}) is bounded and derandomized so
CI is fast and reproducible; C{HYPOTHESIS_PROFILE=long} runs many more
examples for a fuzzing session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "long",
    max_examples=20000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

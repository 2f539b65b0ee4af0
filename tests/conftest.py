"""
Test-suite-wide configuration: Hypothesis profiles.

C{HYPOTHESIS_PROFILE=ci} (set by C{.ci/test}) is bounded and derandomized so
CI is fast and reproducible; C{HYPOTHESIS_PROFILE=long} runs many more
examples for a fuzzing session, and C{fuzz} (set by C{.ci/fuzz}) is sized
for the fuzz tests to finish in a few minutes on two cores.

Each profile has a C{<name>-stateful} companion used by the stateful session
tests (C{tests/test_properties_session.py}), whose runs are whole SMTP
sessions and so cost much more than one parser input: fewer examples, a
bounded number of steps.
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
settings.register_profile(
    "ci-stateful",
    settings.get_profile("ci"),
    max_examples=100,
    stateful_step_count=12,
)
settings.register_profile(
    "dev-stateful",
    settings.get_profile("dev"),
    max_examples=50,
    stateful_step_count=12,
)
settings.register_profile(
    "long-stateful",
    settings.get_profile("long"),
    max_examples=2000,
    stateful_step_count=16,
)
settings.register_profile(
    "fuzz",
    settings.get_profile("long"),
    max_examples=10000,
)
settings.register_profile(
    "fuzz-stateful",
    settings.get_profile("fuzz"),
    max_examples=2000,
    stateful_step_count=16,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

"""Shared by the hostile-input tests: a modest hypothesis profile and the
strategies for outside data.

The default profile keeps example counts low so the whole hostile suite adds
well under a minute; ``HYPOTHESIS_PROFILE=thorough pytest --timeout 0 tests/hostile``
runs a real search.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "wirepool",
    max_examples=60,
    deadline=None,  # two busy cores: a slow example is not a failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "wirepool"))

# JSON values including what Python's json writes but no one should: NaN,
# Infinity, huge integers.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> str:
    return json.dumps(value)


# Whatever might sit in a file someone else can write: garbage text, binary,
# plausible-but-wrong JSON, absurd nesting, huge numbers.
hostile_text = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    json_values.map(dumps),
    st.integers().map(str),
    st.integers(min_value=1, max_value=60).map(lambda n: "[" * (n * 1000)),
    st.integers(min_value=1, max_value=20).map(lambda n: "9" * (n * 500)),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "+5",
            "1e9",
            "NaN",
            "Infinity",
            '{"pid": true}',
            '{"pid": 0}',
            '{"pid": -1}',
            '{"pid": 1, "start_time": NaN}',
            '{"pid": 1, "start_time": Infinity}',
            '{"pid": 1, "start_time": 1e400}',
            '{"pid": 1, "started_at": "9999-12-31T23:59:59-23:59"}',
            '{"pid": 1, "started_at": "0001-01-01T00:00:00+23:59"}',
            '{"pid": 18446744073709551617}',
            "\x00\x00\x00",
            "\ufeff123",
        ]
    ),
)
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def attempt(
    fn: Any, *args: Any, errors: type[BaseException] | tuple[type[BaseException], ...]
) -> tuple[Any, str | None]:
    """``(fn(*args), None)``, or ``(None, message)`` if it raised one of the
    documented ``errors`` -- whose message must say something.  Anything else
    propagates and fails the property."""
    try:
        return fn(*args), None
    except errors as exc:
        message = str(exc)
    assert message, "an error without a reason"
    return None, message

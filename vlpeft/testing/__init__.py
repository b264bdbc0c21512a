"""Helpers for testing vlpeft and code built on it (synthetic dataset layouts: :mod:`vlpeft.testing.layouts`)."""
from .layouts import (  # noqa: F401
    DEFAULT_CLASSES,
    DEFAULT_PER_CLASS,
    LAYOUT_NAMES,
    expected_classnames,
    expected_counts,
    make_layout,
)

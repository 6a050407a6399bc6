"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from dispatcher import metrics


@pytest.fixture
def steps(dispatcher):
    """The workers' step functions on this test's Dispatcher, deferring metrics as a worker does."""
    from workers import context
    from workers import steps as step_functions

    previous = context._core
    dispatcher.core.deferred_metrics = metrics.Deferred()
    context.install(dispatcher.core)
    yield step_functions
    context._core = previous

"""Outages with the Motor driver (the motor extra): every test of test_outage.py again,
with example_app's client built by Motor instead of PyMongo's async client."""

from __future__ import annotations

import os
from collections.abc import Iterator

import example_app.db
import pytest
import test_outage
from motor.motor_asyncio import AsyncIOMotorClient

# Collected here under this module's fixtures.
from test_outage import *  # noqa: F403


@pytest.fixture(autouse=True)
def motor_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(example_app.db, "Client", AsyncIOMotorClient)
    # Motor runs each operation on one of MOTOR_MAX_WORKERS threads (default 5 per CPU).
    # While the database is down each operation holds its thread for the whole timeout,
    # so requests beyond that number wait for a thread: their bound grows by one timeout
    # per batch.
    parallelism = int(os.environ.get("MOTOR_MAX_WORKERS", (os.cpu_count() or 1) * 5))
    monkeypatch.setattr(test_outage, "DRIVER_PARALLELISM", parallelism)
    yield


def test_the_app_runs_on_motor(app):
    assert isinstance(app.settings["services"].mongo_client, AsyncIOMotorClient)

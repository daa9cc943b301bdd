"""What the web floor's views need from the app, as one typed object.

`create_app` builds a `Services` and keeps it in ``app.extensions["echo"]``;
views reach it through `services()` instead of fetching strings out of the
Flask config, so a missing or misspelt service is a type error, not a KeyError
at request time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from flask import Flask, current_app

from ..answer.held import HeldBudget
from ..answer.rules import RuleBook
from ..history import Store
from ..observe.arrivals import Arrivals
from ..observe.metrics import Metrics
from ..observe.recorder import Recorder

EXTENSION = "echo"


@dataclass(frozen=True)
class InspectorOptions:
    """The settings the inspector reads, as plain values."""

    prefix: str = "/_/"
    ui_auth: str = ""
    history: int = 1000
    max_scan: int = 10_000  # --max-scan
    metrics: bool = True
    max_wait: float = 30.0  # --max-wait: the longest timeout a history wait may ask for


@dataclass
class Services:
    """The store, the recorder and the metrics of one app, and the inspector's options.

    Mutable so that a test can swap the store for a failing one."""

    store: Store
    recorder: Recorder
    metrics: Metrics
    held: HeldBudget  # workers held waiting (delays now; waits and streams later), ended by the CLI on stop
    options: InspectorOptions
    # History waits: at most --max-waiters at once (each also takes a `held` slot),
    # woken by the recorder through `arrivals`.
    waiters: HeldBudget = field(default_factory=lambda: HeldBudget(0))
    arrivals: Arrivals = field(default_factory=Arrivals)
    echo: Any = None  # the echo's WSGI handler, set once it is built
    rules: RuleBook | None = None  # the --rules file's rules and the API's


def services(app: Flask | None = None) -> Services:
    """The services of `app` (the current app when none is given)."""
    return cast(Services, (app or current_app).extensions[EXTENSION])

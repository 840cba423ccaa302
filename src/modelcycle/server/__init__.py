"""The platform server: `modelcycle server`.

One process for a team: a JSON API under ``/api/v1`` (monitors, alerts, events so far),
Prometheus gauges of every monitor's newest result at ``/metrics``, and the scheduler
that runs monitors when they are due. It listens on 127.0.0.1 unless told otherwise.
"""

from modelcycle.server.app import create_app
from modelcycle.server.scheduler import Scheduler

__all__ = ["Scheduler", "create_app"]

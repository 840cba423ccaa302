"""Operational figures of a model server, from its Prometheus metrics.

A monitor scrapes the server's ``GET /metrics`` on each run (`scrape`), keeps the
`Snapshot` with its result (`Snapshot.to_dict`), and on the next run computes what
happened in between (`window`): requests, errors, requests per second and latency
quantiles — for the whole deployment or for one model version, so that the closed loop
can compare a canary with its champion. `volume_anomaly` says whether a window's traffic
is unusual against the windows before it.

Only two metrics of the server are read (`modelcycle.serving.metrics`):

- ``modelcycle_requests_total{model, version, endpoint, status}``, which gives the
  request counts and the errors;
- ``modelcycle_request_duration_seconds{model, version, endpoint}`` (a histogram), which
  gives the latencies. It has no ``status`` label, so latencies are those of all
  requests, failed ones included.

Statuses: 5xx are errors (``error_rate``, the server's or the model's fault); 4xx,
including the server's 499 for a client that went away, are client errors
(``client_error_rate``): bad input is not the model's fault, but a surge of it is worth
an alert of its own. Both rates are shares of all requests in the window.

Counters only grow while a server runs. When one went down (or vanished) between two
snapshots, the server restarted, and since a restart zeroes every counter, each series'
value in the later snapshot is then its increase. Prometheus decides this per series;
deciding once for the whole scrape gives the same answer when the restart shows in the
series itself, and the right one when only another series shows it.

With several workers the server sums them in one scrape. Several replicas behind a load
balancer are not: scrape each replica, not the balancer.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from prometheus_client.parser import text_string_to_metric_families

from modelcycle.core.errors import InputDataError, StorageError, UsageError
from modelcycle.core.text import suggest

REQUESTS: Final = "modelcycle_requests_total"
DURATION: Final = "modelcycle_request_duration_seconds"
#: endpoints that answer clients' prediction requests (the default of `window`)
PREDICTION_ENDPOINTS: Final = ("v1", "invocations", "v2")
#: every ``endpoint`` label the server writes: mirrored shadow copies and feedback too
ALL_ENDPOINTS: Final = (*PREDICTION_ENDPOINTS, "shadow", "feedback")
#: a larger answer is not a model server's /metrics
MAX_METRICS_BYTES = 64 * 1024 * 1024
SNAPSHOT_FORMAT = 1
QUANTILES: Final = (0.5, 0.95, 0.99)

#: (model, version, endpoint, HTTP status)
RequestKey = tuple[str, str, str, int]
#: (model, version, endpoint)
SeriesKey = tuple[str, str, str]


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class Latency:
    """One latency histogram series: cumulative bucket counts by upper bound (ascending,
    the last one +Inf), the sum of the observed seconds and their count."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float


@dataclass(frozen=True)
class Snapshot:
    """The request counters and latency histograms of one scrape, and its time (Unix
    seconds). ``source`` is the URL scraped, when there was one."""

    when: float
    requests: Mapping[RequestKey, float]
    latency: Mapping[SeriesKey, Latency]
    source: str | None = None

    def versions(self, model: str) -> list[str]:
        """The versions of ``model`` that answered requests, by version number."""
        seen = {k[1] for k in self.requests if k[0] == model}
        return sorted(seen, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `from_dict` reads it back."""
        return {
            "format": SNAPSHOT_FORMAT,
            "when": self.when,
            "source": self.source,
            "requests": [
                {"model": m, "version": v, "endpoint": e, "status": s, "count": n}
                for (m, v, e, s), n in sorted(self.requests.items())
            ],
            "latency": [
                {
                    "model": m,
                    "version": v,
                    "endpoint": e,
                    "buckets": {_le_text(le): n for le, n in h.buckets},
                    "sum": h.sum,
                    "count": h.count,
                }
                for (m, v, e), h in sorted(self.latency.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """The snapshot `to_dict` wrote. Raises InputDataError when ``data`` is not one."""
        try:
            if data.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {SNAPSHOT_FORMAT}")
            requests: dict[RequestKey, float] = {}
            for r in data["requests"]:
                key = (str(r["model"]), str(r["version"]), str(r["endpoint"]), int(r["status"]))
                requests[key] = float(r["count"])
            latency: dict[SeriesKey, Latency] = {}
            for h in data["latency"]:
                buckets = sorted((float(le), float(n)) for le, n in h["buckets"].items())
                latency[str(h["model"]), str(h["version"]), str(h["endpoint"])] = Latency(
                    tuple(buckets), float(h["sum"]), float(h["count"])
                )
            source = data.get("source")
            return cls(
                float(data["when"]), requests, latency, None if source is None else str(source)
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputDataError(
                f"this is not a stored operations snapshot: {type(e).__name__}: {e}",
                hint="pass what Snapshot.to_dict returned, unchanged",
            ) from e


def _le_text(le: float) -> str:
    return "+Inf" if le == math.inf else repr(le)


def parse(text: str, when: float, *, source: str | None = None) -> Snapshot:
    """The snapshot in Prometheus exposition ``text`` (what ``GET /metrics`` answers),
    taken at ``when`` (Unix seconds). Other metrics in the text are ignored."""
    requests: dict[RequestKey, float] = {}
    buckets: dict[SeriesKey, dict[float, float]] = {}
    sums: dict[SeriesKey, float] = {}
    counts: dict[SeriesKey, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                key = (
                    labels.get("model", ""),
                    labels.get("version", ""),
                    labels.get("endpoint", ""),
                )
                if sample.name == REQUESTS:
                    status = _status(labels.get("status"), sample.name)
                    rkey = (*key, status)
                    requests[rkey] = requests.get(rkey, 0.0) + sample.value
                elif sample.name == DURATION + "_bucket":
                    le = float(labels["le"])
                    series = buckets.setdefault(key, {})
                    series[le] = series.get(le, 0.0) + sample.value
                elif sample.name == DURATION + "_sum":
                    sums[key] = sums.get(key, 0.0) + sample.value
                elif sample.name == DURATION + "_count":
                    counts[key] = counts.get(key, 0.0) + sample.value
    except (ValueError, KeyError, IndexError) as e:
        where = f" from {source}" if source else ""
        raise InputDataError(
            f"the metrics text{where} cannot be read as Prometheus exposition format: {e}",
            hint="point at a modelcycle model server's /metrics",
        ) from e
    latency = {
        key: Latency(
            tuple(sorted(buckets.get(key, {}).items())), sums.get(key, 0.0), counts.get(key, 0.0)
        )
        for key in buckets.keys() | sums.keys() | counts.keys()
    }
    return Snapshot(when, requests, latency, source)


def _status(value: str | None, name: str) -> int:
    if value is None or not value.isdigit():
        raise ValueError(f"{name} has status {value!r}, not an HTTP status")
    return int(value)


def scrape(url: str, *, timeout: float = 5.0) -> Snapshot:
    """GET a model server's metrics and parse them. ``url`` is the server's
    ``/metrics`` URL, or its base URL (``http://host:8080``), to which ``/metrics`` is
    added. Proxy settings in the environment are not used, as Prometheus does not use
    them. Raises StorageError when the server cannot be read, InputDataError when its
    answer is not metrics."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"cannot scrape {url!r}: not an http(s) URL",
            hint="give the model server's URL, e.g. http://127.0.0.1:8080/metrics",
        )
    if parts.path in ("", "/"):
        url = urllib.parse.urlunsplit(parts._replace(path="/metrics"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    when = time.time()  # a scrape's time is when it started, as in Prometheus
    try:
        with opener.open(request, timeout=timeout) as answer:
            body: bytes = answer.read(MAX_METRICS_BYTES + 1)
    except urllib.error.HTTPError as e:
        e.close()
        raise StorageError(
            f"GET {url} answered {e.code} {e.reason}",
            hint="check that the URL is a modelcycle model server's /metrics",
            url=url,
            status=e.code,
        ) from e
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise StorageError(
            f"cannot read metrics from {url}: {reason}",
            hint=(
                "check that the model server is running (modelcycle serve) and listens "
                f"at {parts.netloc}, or raise the timeout ({timeout:g} s)"
            ),
            url=url,
        ) from e
    if len(body) > MAX_METRICS_BYTES:
        raise InputDataError(
            f"GET {url} answered more than {MAX_METRICS_BYTES} bytes; that is not a "
            "model server's /metrics",
            hint="check the URL",
        )
    return parse(body.decode("utf-8", errors="replace"), when, source=url)


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class OperationalStats:
    """What a server answered between two snapshots. Rates, quantiles and the mean are
    None when no request was answered; ``requests_per_second`` is None only when the
    window's length is unknown (no earlier snapshot)."""

    requests: int
    errors: int
    client_errors: int
    window_seconds: float | None
    requests_per_second: float | None
    error_rate: float | None
    client_error_rate: float | None
    p50_latency_seconds: float | None
    p95_latency_seconds: float | None
    p99_latency_seconds: float | None
    mean_latency_seconds: float | None
    counter_reset: bool = False
    statuses: Mapping[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The figures under the names alert rules use (``error_rate > 0.01``)."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "window_seconds": self.window_seconds,
            "requests_per_second": self.requests_per_second,
            "error_rate": self.error_rate,
            "client_error_rate": self.client_error_rate,
            "p50_latency_seconds": self.p50_latency_seconds,
            "p95_latency_seconds": self.p95_latency_seconds,
            "p99_latency_seconds": self.p99_latency_seconds,
            "mean_latency_seconds": self.mean_latency_seconds,
            "counter_reset": self.counter_reset,
        }


def window(
    before: Snapshot | None,
    after: Snapshot,
    *,
    model: str | None = None,
    version: int | str | None = None,
    endpoints: Iterable[str] | None = None,
) -> OperationalStats:
    """The requests answered between ``before`` and ``after`` (since the server started
    when ``before`` is None), for one ``model`` and ``version`` if given. ``endpoints``
    defaults to the prediction endpoints (`PREDICTION_ENDPOINTS`); mirrored shadow
    copies and feedback are counted only when named (`ALL_ENDPOINTS`)."""
    chosen = _endpoints(endpoints)
    wanted_version = None if version is None else str(version)

    def keep(key: SeriesKey | RequestKey) -> bool:
        return (
            key[2] in chosen
            and (model is None or key[0] == model)
            and (wanted_version is None or key[1] == wanted_version)
        )

    seconds: float | None = None
    reset = False
    if before is not None:
        seconds = after.when - before.when
        if not seconds > 0:
            raise UsageError(
                f"the later snapshot (taken at {after.when}) is not later than the earlier "
                f"one (taken at {before.when})",
                hint="pass the earlier snapshot first: window(before, after)",
            )
        reset = _restarted(before, after)
    base = None if before is None or reset else before

    statuses: dict[int, float] = {}
    for key, value in after.requests.items():
        if keep(key):
            old = base.requests.get(key, 0.0) if base else 0.0
            statuses[key[3]] = statuses.get(key[3], 0.0) + value - old
    total = round(sum(statuses.values()))
    errors = round(sum(n for s, n in statuses.items() if 500 <= s <= 599))
    client_errors = round(sum(n for s, n in statuses.items() if 400 <= s <= 499))

    buckets: dict[float, float] = {}
    seconds_sum = count = 0.0
    for series, h in after.latency.items():
        if not keep(series):
            continue
        old_h = base.latency.get(series) if base else None
        old_buckets = dict(old_h.buckets) if old_h else {}
        for le, n in h.buckets:
            buckets[le] = buckets.get(le, 0.0) + n - old_buckets.get(le, 0.0)
        seconds_sum += h.sum - (old_h.sum if old_h else 0.0)
        count += h.count - (old_h.count if old_h else 0.0)
    ordered = sorted(buckets.items())
    p50, p95, p99 = (quantile(q, ordered) if total else None for q in QUANTILES)

    return OperationalStats(
        requests=total,
        errors=errors,
        client_errors=client_errors,
        window_seconds=seconds,
        requests_per_second=None if seconds is None else total / seconds,
        error_rate=errors / total if total else None,
        client_error_rate=client_errors / total if total else None,
        p50_latency_seconds=p50,
        p95_latency_seconds=p95,
        p99_latency_seconds=p99,
        mean_latency_seconds=seconds_sum / count if total and count > 0 else None,
        counter_reset=reset,
        statuses={s: round(n) for s, n in sorted(statuses.items()) if round(n)},
    )


def _endpoints(endpoints: Iterable[str] | None) -> frozenset[str]:
    if endpoints is None:
        return frozenset(PREDICTION_ENDPOINTS)
    if isinstance(endpoints, str):
        raise UsageError(
            f"endpoints={endpoints!r} is one name, not a list of names",
            hint=f"write endpoints=[{endpoints!r}]",
        )
    chosen = frozenset(endpoints)
    unknown = sorted(chosen - set(ALL_ENDPOINTS))
    if unknown:
        name = unknown[0]
        raise UsageError(
            f"the model server has no endpoint label {name!r}{suggest(name, ALL_ENDPOINTS)}",
            hint=f"choose among {', '.join(ALL_ENDPOINTS)}",
        )
    return chosen


def _restarted(before: Snapshot, after: Snapshot) -> bool:
    """Whether any counter went down or vanished: the server restarted in between."""
    for key, value in before.requests.items():
        if after.requests.get(key, -1.0) < value:
            return True
    for series, old in before.latency.items():
        new = after.latency.get(series)
        if new is None or new.count < old.count or new.sum < old.sum:
            return True
        new_buckets = dict(new.buckets)
        if any(new_buckets.get(le, -1.0) < n for le, n in old.buckets):
            return True
    return False


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile (0 to 1) of a histogram given as cumulative counts by upper
    bound (ascending, the last one +Inf), as Prometheus' ``histogram_quantile`` estimates
    it: linear interpolation inside the bucket the rank falls in, the first bucket
    starting at 0, and the highest finite bound when the rank falls in the +Inf bucket.
    None when the histogram is empty or has no +Inf bucket."""
    if not 0.0 <= q <= 1.0:
        raise UsageError(f"quantile {q} is not between 0 and 1", hint="use e.g. 0.95")
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return None
    # Counts must not fall with the bound; Prometheus repairs the same way.
    bounds, cumulative, highest = [], [], 0.0
    for le, n in buckets:
        highest = max(highest, n)
        bounds.append(le)
        cumulative.append(highest)
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next((i for i in range(len(bounds) - 1) if cumulative[i] >= rank), len(bounds) - 1)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if b == 0 else bounds[b - 1]
    below = 0.0 if b == 0 else cumulative[b - 1]
    inside = cumulative[b] - below
    return start + (bounds[b] - start) * (rank - below) / inside


# --------------------------------------------------------------------------- traffic volume


@dataclass(frozen=True)
class Anomaly:
    """Whether a traffic figure is unusual against its own history. ``anomalous`` is
    None when there is not enough history to say. ``score`` is signed (above or below
    what was expected) and infinite when the history never varied and the figure
    differs from it."""

    method: str
    score: float | None
    anomalous: bool | None
    expected: float | None
    spread: float | None
    threshold: float
    history: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: an infinite score is written as None (``anomalous`` stays true)."""
        finite = self.score is not None and math.isfinite(self.score)
        return {
            "method": self.method,
            "score": self.score if finite else None,
            "anomalous": self.anomalous,
            "expected": self.expected,
            "spread": self.spread,
            "threshold": self.threshold,
            "history": self.history,
            "reason": self.reason,
        }


def volume_anomaly(
    history: Sequence[float],
    current: float,
    *,
    method: Literal["zscore", "ewma"] = "zscore",
    min_history: int = 5,
    alpha: float = 0.3,
    threshold: float = 3.0,
) -> Anomaly:
    """Compare ``current`` (e.g. this window's requests per second) with ``history``
    (earlier windows, oldest first). ``zscore``: distance from the history's mean in
    sample standard deviations. ``ewma``: distance from an exponentially weighted mean
    in exponentially weighted standard deviations (``alpha`` is the weight of the newest
    point), so recent windows count more and slow trends are followed. Anomalous when
    the distance is more than ``threshold``, either way."""
    if method not in ("zscore", "ewma"):
        raise UsageError(
            f"unknown anomaly method {method!r}{suggest(str(method), ('zscore', 'ewma'))}",
            hint="use method='zscore' or method='ewma'",
        )
    if min_history < 2:
        raise UsageError(
            f"min_history={min_history}: a spread needs at least 2 points", hint="use 2 or more"
        )
    if not 0.0 < alpha <= 1.0:
        raise UsageError(f"alpha={alpha} is not in (0, 1]", hint="use e.g. alpha=0.3")
    if not threshold > 0:
        raise UsageError(f"threshold={threshold} is not positive", hint="use e.g. 3")
    values = [float(v) for v in history]
    if not all(math.isfinite(v) for v in [*values, float(current)]):
        raise UsageError(
            "the traffic history or the current value is not a finite number",
            hint="leave windows without a value out of the history",
        )
    if len(values) < min_history:
        return Anomaly(
            method,
            None,
            None,
            None,
            None,
            threshold,
            len(values),
            f"not enough history: {len(values)} of the {min_history} points needed",
        )
    if method == "zscore":
        mean = sum(values) / len(values)
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    else:
        mean, variance = values[0], 0.0
        for v in values[1:]:
            diff = v - mean
            mean += alpha * diff
            variance = (1.0 - alpha) * (variance + alpha * diff * diff)
    spread = math.sqrt(variance)
    diff = current - mean
    if spread == 0.0:
        score = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        score = diff / spread
    anomalous = abs(score) > threshold
    where = "above" if diff > 0 else "below" if diff < 0 else "at"
    if spread == 0.0:
        reason = (
            f"{current:g} equals the constant history"
            if diff == 0.0
            else f"{current:g} is {where} a history that never varied from {mean:g}"
        )
    else:
        verdict = "more than" if anomalous else "within"
        reason = (
            f"{current:g} is {abs(score):.2f} standard deviations {where} the expected "
            f"{mean:g} ({verdict} {threshold:g}; {method} over {len(values)} points)"
        )
    return Anomaly(method, score, anomalous, mean, spread, threshold, len(values), reason)

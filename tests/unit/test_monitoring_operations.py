"""Operational figures from the model server's metrics: parsing (single- and
multiprocess-style text), windows between two snapshots (counter resets, empty windows,
+Inf buckets, filtering by version), latency quantiles checked against hand computations,
scraping a real socket, and traffic volume anomalies."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from modelcycle.core.errors import InputDataError, StorageError, UsageError
from modelcycle.monitoring.operations import (
    ALL_ENDPOINTS,
    Snapshot,
    parse,
    quantile,
    scrape,
    volume_anomaly,
    window,
)

T0 = 1_700_000_000.0

# Single-process style: labels in the server's order, _created samples, other metrics.
# iris@1 on v1 answered 30 requests before and 130 after (94 x 200, 2 x 500, 4 x 422 in
# the window); iris@2 (the canary) appears only in the later scrape.
BEFORE = """\
# HELP modelcycle_requests_total Prediction requests answered.
# TYPE modelcycle_requests_total counter
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="200"} 26.0
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="500"} 2.0
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="422"} 2.0
modelcycle_requests_total{model="",version="",endpoint="feedback",status="200"} 3.0
# HELP modelcycle_requests_created Prediction requests answered.
# TYPE modelcycle_requests_created gauge
modelcycle_requests_created{model="iris",version="1",endpoint="v1",status="200"} 1.7e+09
# HELP modelcycle_request_duration_seconds Time from the request's arrival to its answer.
# TYPE modelcycle_request_duration_seconds histogram
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.01"} 10.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.05"} 20.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.1"} 30.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.5"} 30.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="+Inf"} 30.0
modelcycle_request_duration_seconds_count{model="iris",version="1",endpoint="v1"} 30.0
modelcycle_request_duration_seconds_sum{model="iris",version="1",endpoint="v1"} 1.0
# HELP modelcycle_requests_in_flight Requests being answered now.
# TYPE modelcycle_requests_in_flight gauge
modelcycle_requests_in_flight 4.0
"""

AFTER = """\
# HELP modelcycle_requests_total Prediction requests answered.
# TYPE modelcycle_requests_total counter
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="200"} 120.0
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="500"} 4.0
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="422"} 6.0
modelcycle_requests_total{model="iris",version="2",endpoint="v1",status="200"} 8.0
modelcycle_requests_total{model="iris",version="2",endpoint="v1",status="500"} 2.0
modelcycle_requests_total{model="iris",version="2",endpoint="shadow",status="200"} 50.0
modelcycle_requests_total{model="",version="",endpoint="feedback",status="200"} 10.0
# HELP modelcycle_request_duration_seconds Time from the request's arrival to its answer.
# TYPE modelcycle_request_duration_seconds histogram
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.01"} 30.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.05"} 80.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.1"} 120.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.5"} 128.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="+Inf"} 130.0
modelcycle_request_duration_seconds_count{model="iris",version="1",endpoint="v1"} 130.0
modelcycle_request_duration_seconds_sum{model="iris",version="1",endpoint="v1"} 8.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="v1",le="0.01"} 0.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="v1",le="0.05"} 0.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="v1",le="0.1"} 5.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="v1",le="0.5"} 10.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="v1",le="+Inf"} 10.0
modelcycle_request_duration_seconds_count{model="iris",version="2",endpoint="v1"} 10.0
modelcycle_request_duration_seconds_sum{model="iris",version="2",endpoint="v1"} 2.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="shadow",le="0.01"} 50.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="shadow",le="0.05"} 50.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="shadow",le="0.1"} 50.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="shadow",le="0.5"} 50.0
modelcycle_request_duration_seconds_bucket{model="iris",version="2",endpoint="shadow",le="+Inf"} 50.0
modelcycle_request_duration_seconds_count{model="iris",version="2",endpoint="shadow"} 50.0
modelcycle_request_duration_seconds_sum{model="iris",version="2",endpoint="shadow"} 0.25
modelcycle_request_duration_seconds_bucket{model="",version="",endpoint="feedback",le="+Inf"} 10.0
modelcycle_request_duration_seconds_count{model="",version="",endpoint="feedback"} 10.0
modelcycle_request_duration_seconds_sum{model="",version="",endpoint="feedback"} 0.1
# HELP modelcycle_predictions_total Predicted rows of classifiers, by predicted class.
# TYPE modelcycle_predictions_total counter
modelcycle_predictions_total{model="iris",version="1",class="0"} 77.0
"""

# iris@1's series of AFTER as prometheus_client's MultiProcessCollector writes them: sum
# first, labels sorted, no _created, and no HELP for series that are summed over workers.
AFTER_IRIS1_MULTIPROCESS = """\
# HELP modelcycle_request_duration_seconds Multiprocess metric
# TYPE modelcycle_request_duration_seconds histogram
modelcycle_request_duration_seconds_sum{endpoint="v1",model="iris",version="1"} 8.0
modelcycle_request_duration_seconds_bucket{endpoint="v1",le="0.01",model="iris",version="1"} 30.0
modelcycle_request_duration_seconds_bucket{endpoint="v1",le="0.05",model="iris",version="1"} 80.0
modelcycle_request_duration_seconds_bucket{endpoint="v1",le="0.1",model="iris",version="1"} 120.0
modelcycle_request_duration_seconds_bucket{endpoint="v1",le="0.5",model="iris",version="1"} 128.0
modelcycle_request_duration_seconds_bucket{endpoint="v1",le="+Inf",model="iris",version="1"} 130.0
modelcycle_request_duration_seconds_count{endpoint="v1",model="iris",version="1"} 130.0
# HELP modelcycle_requests_total Multiprocess metric
# TYPE modelcycle_requests_total counter
modelcycle_requests_total{endpoint="v1",model="iris",status="200",version="1"} 120.0
modelcycle_requests_total{endpoint="v1",model="iris",status="422",version="1"} 6.0
modelcycle_requests_total{endpoint="v1",model="iris",status="500",version="1"} 4.0
# HELP modelcycle_requests_in_flight Multiprocess metric
# TYPE modelcycle_requests_in_flight gauge
modelcycle_requests_in_flight 0.0
"""

# The server restarted between AFTER and this scrape: iris@1's 200s fell from 120 to 5,
# its 500s are gone, and its 422s (a quiet series) are back at 7, above the 6 before.
RESTARTED = """\
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="200"} 5.0
modelcycle_requests_total{model="iris",version="1",endpoint="v1",status="422"} 7.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="0.01"} 12.0
modelcycle_request_duration_seconds_bucket{model="iris",version="1",endpoint="v1",le="+Inf"} 12.0
modelcycle_request_duration_seconds_count{model="iris",version="1",endpoint="v1"} 12.0
modelcycle_request_duration_seconds_sum{model="iris",version="1",endpoint="v1"} 0.06
"""

FRESH_SERVER = """\
# HELP modelcycle_requests_total Prediction requests answered.
# TYPE modelcycle_requests_total counter
# HELP modelcycle_request_duration_seconds Time from the request's arrival to its answer.
# TYPE modelcycle_request_duration_seconds histogram
"""


@pytest.fixture
def before() -> Snapshot:
    return parse(BEFORE, T0)


@pytest.fixture
def after() -> Snapshot:
    return parse(AFTER, T0 + 60)


# --------------------------------------------------------------------------- parsing


def test_parse_keeps_request_counters_and_latency_histograms_only(after: Snapshot) -> None:
    assert after.when == T0 + 60
    assert after.requests == {
        ("iris", "1", "v1", 200): 120.0,
        ("iris", "1", "v1", 500): 4.0,
        ("iris", "1", "v1", 422): 6.0,
        ("iris", "2", "v1", 200): 8.0,
        ("iris", "2", "v1", 500): 2.0,
        ("iris", "2", "shadow", 200): 50.0,
        ("", "", "feedback", 200): 10.0,
    }
    iris1 = after.latency["iris", "1", "v1"]
    assert iris1.buckets == (
        (0.01, 30.0),
        (0.05, 80.0),
        (0.1, 120.0),
        (0.5, 128.0),
        (math.inf, 130.0),
    )
    assert (iris1.sum, iris1.count) == (8.0, 130.0)
    assert set(after.latency) == {
        ("iris", "1", "v1"),
        ("iris", "2", "v1"),
        ("iris", "2", "shadow"),
        ("", "", "feedback"),
    }
    assert after.versions("iris") == ["1", "2"]
    assert after.versions("other") == []


def test_multiprocess_output_parses_like_single_process_output(after: Snapshot) -> None:
    multi = parse(AFTER_IRIS1_MULTIPROCESS, T0 + 60)
    assert multi.requests == {
        k: v for k, v in after.requests.items() if k[:3] == ("iris", "1", "v1")
    }
    assert multi.latency == {("iris", "1", "v1"): after.latency["iris", "1", "v1"]}
    assert window(None, multi).to_dict() == window(None, after, version=1).to_dict()


def test_versions_sort_by_number() -> None:
    text = "".join(
        f'modelcycle_requests_total{{model="m",version="{v}",endpoint="v1",status="200"}} 1\n'
        for v in ("10", "9", "2")
    )
    assert parse(text, T0).versions("m") == ["2", "9", "10"]


@pytest.mark.parametrize(
    "text",
    [
        "<html><body>not metrics</body></html>",
        'modelcycle_requests_total{model="a",version="1",endpoint="v1",status="ok"} 1\n',
        'modelcycle_requests_total{model="a",version="1",endpoint="v1"} 1\n',
        "modelcycle_requests_total{model= 1\n",
    ],
)
def test_text_that_is_not_server_metrics_is_refused(text: str) -> None:
    with pytest.raises(InputDataError, match="cannot be read as Prometheus"):
        parse(text, T0, source="http://x/metrics")


def test_snapshot_survives_strict_json(before: Snapshot, after: Snapshot) -> None:
    stored = json.loads(json.dumps(after.to_dict(), allow_nan=False))
    assert stored["latency"][0]["buckets"]["+Inf"] > 0
    back = Snapshot.from_dict(stored)
    assert back == after
    assert window(before, back) == window(before, after)


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"format": 1, "when": 1.0, "requests": [{"model": "a"}], "latency": []},
        {"format": 99, "when": 1.0, "requests": [], "latency": []},
        {"format": 1, "when": "soon", "requests": [], "latency": []},
    ],
)
def test_from_dict_refuses_what_to_dict_did_not_write(broken: dict[str, Any]) -> None:
    with pytest.raises(InputDataError, match="not a stored operations snapshot"):
        Snapshot.from_dict(broken)


# --------------------------------------------------------------------------- windows


def test_window_counts_errors_and_hand_computed_quantiles(
    before: Snapshot, after: Snapshot
) -> None:
    stats = window(before, after, model="iris", version=1)
    assert stats.to_dict() == {
        "requests": 100,
        "errors": 2,
        "client_errors": 4,
        "window_seconds": 60.0,
        "requests_per_second": pytest.approx(100 / 60),
        "error_rate": pytest.approx(0.02),
        "client_error_rate": pytest.approx(0.04),
        # bucket deltas 0.01:20 0.05:60 0.1:90 0.5:98 +Inf:100
        # p50: rank 50 in (0.01, 0.05], 30 of its 40 -> 0.01 + 0.04 * 30/40
        "p50_latency_seconds": pytest.approx(0.04),
        # p95: rank 95 in (0.1, 0.5], 5 of its 8 -> 0.1 + 0.4 * 5/8
        "p95_latency_seconds": pytest.approx(0.35),
        # p99: rank 99 is in the +Inf bucket -> the highest finite bound
        "p99_latency_seconds": 0.5,
        "mean_latency_seconds": pytest.approx(7.0 / 100),
        "counter_reset": False,
    }
    assert stats.statuses == {200: 94, 422: 4, 500: 2}


def test_filtering_by_version_separates_canary_from_champion(
    before: Snapshot, after: Snapshot
) -> None:
    champion = window(before, after, model="iris", version="1")
    canary = window(before, after, model="iris", version=2)
    assert (champion.requests, canary.requests) == (100, 10)
    assert canary.error_rate == pytest.approx(0.2)
    assert champion.error_rate == pytest.approx(0.02)
    # canary deltas 0.1:5 0.5:10; p50 rank 5 -> 0.05 + 0.05 * 5/5, p99 rank 9.9 -> 0.1 + 0.4 * 4.9/5
    assert canary.p50_latency_seconds == pytest.approx(0.1)
    assert canary.p99_latency_seconds == pytest.approx(0.492)
    assert window(before, after, model="iris", version=3).requests == 0
    assert window(before, after, model="other").requests == 0


def test_default_endpoints_leave_out_shadow_copies_and_feedback(
    before: Snapshot, after: Snapshot
) -> None:
    everything = window(before, after)
    assert everything.requests == 110
    assert (everything.errors, everything.client_errors) == (4, 4)
    # summed deltas 0.01:20 0.05:60 0.1:95 0.5:108 +Inf:110; rank 55 -> 0.01 + 0.04 * 35/40
    assert everything.p50_latency_seconds == pytest.approx(0.045)
    with_all = window(before, after, endpoints=ALL_ENDPOINTS)
    assert with_all.requests == 110 + 50 + 7
    shadow = window(before, after, endpoints=["shadow"])
    assert shadow.requests == 50
    assert shadow.p99_latency_seconds == pytest.approx(0.01 * 0.99)


def test_without_an_earlier_snapshot_the_totals_since_start_count(after: Snapshot) -> None:
    stats = window(None, after, version=1)
    assert stats.requests == 130
    assert stats.errors == 4
    assert stats.window_seconds is None
    assert stats.requests_per_second is None
    assert stats.mean_latency_seconds == pytest.approx(8.0 / 130)


def test_an_empty_window_has_no_rates_and_no_division(before: Snapshot) -> None:
    same = parse(BEFORE, T0 + 30)
    stats = window(before, same)
    assert stats.requests == 0
    assert stats.requests_per_second == 0.0  # a known silence, so alerts on low traffic fire
    for key in (
        "error_rate",
        "client_error_rate",
        "p50_latency_seconds",
        "p95_latency_seconds",
        "p99_latency_seconds",
        "mean_latency_seconds",
    ):
        assert stats.to_dict()[key] is None, key
    fresh = window(None, parse(FRESH_SERVER, T0))
    assert (fresh.requests, fresh.requests_per_second, fresh.p50_latency_seconds) == (0, None, None)


def test_a_restart_makes_every_later_value_the_increase(after: Snapshot) -> None:
    restarted = parse(RESTARTED, T0 + 120)
    stats = window(after, restarted, model="iris", version=1)
    assert stats.counter_reset
    # 422 went from 6 to 7, yet all 7 came after the restart
    assert stats.statuses == {200: 5, 422: 7}
    assert stats.requests == 12
    assert stats.p50_latency_seconds == pytest.approx(0.005)
    assert stats.mean_latency_seconds == pytest.approx(0.005)
    assert not window(parse(BEFORE, T0), after).counter_reset


def test_a_vanished_series_also_means_a_restart(after: Snapshot) -> None:
    # feedback grew, iris@2's 500s are gone, every histogram is unchanged
    text = AFTER.replace(
        'endpoint="feedback",status="200"} 10.0', 'endpoint="feedback",status="200"} 11.0'
    )
    text = text.replace(
        'modelcycle_requests_total{model="iris",version="2",endpoint="v1",status="500"} 2.0\n', ""
    )
    stats = window(after, parse(text, T0 + 120), version=1)
    assert stats.counter_reset
    assert stats.requests == 130


def _without(text: str, marker: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if marker not in line)


@pytest.mark.parametrize(
    "changed",
    [
        # iris@2's histogram vanished
        _without(_without(AFTER, 'version="2",endpoint="v1"}'), 'version="2",endpoint="v1",le='),
        # one bucket of iris@1 went down
        AFTER.replace('endpoint="v1",le="0.01"} 30.0', 'endpoint="v1",le="0.01"} 29.0'),
    ],
)
def test_a_histogram_alone_can_show_a_restart(after: Snapshot, changed: str) -> None:
    later = parse(changed, T0 + 120)
    assert later.requests == after.requests
    assert later.latency != after.latency
    stats = window(after, later, version=1)
    assert stats.counter_reset
    assert stats.requests == 130


def test_statuses_are_classed_by_hundreds() -> None:
    text = "".join(
        f'modelcycle_requests_total{{model="m",version="1",endpoint="v2",status="{s}"}} {n}\n'
        for s, n in ((200, 10), (304, 1), (404, 2), (499, 3), (503, 4))
    )
    stats = window(None, parse(text, T0))
    assert (stats.requests, stats.errors, stats.client_errors) == (20, 4, 5)
    assert stats.error_rate == pytest.approx(4 / 20)
    assert stats.client_error_rate == pytest.approx(5 / 20)
    assert stats.p50_latency_seconds is None  # no histogram in the text


def test_window_refuses_snapshots_out_of_order(before: Snapshot, after: Snapshot) -> None:
    with pytest.raises(UsageError, match="not later than"):
        window(after, before)


def test_endpoints_are_checked(before: Snapshot, after: Snapshot) -> None:
    with pytest.raises(UsageError, match="one name, not a list"):
        window(before, after, endpoints="v1")
    with pytest.raises(UsageError, match="did you mean 'invocations'"):
        window(before, after, endpoints=["invocation"])


# --------------------------------------------------------------------------- quantiles


def test_quantile_interpolates_from_zero_in_the_first_bucket() -> None:
    assert quantile(0.5, [(0.1, 10.0), (math.inf, 10.0)]) == pytest.approx(0.05)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert quantile(0.5, [(0.1, 0.0), (0.25, 0.0), (math.inf, 4.0)]) == 0.25


def test_quantile_without_data_or_inf_bucket_is_none() -> None:
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert quantile(0.5, [(0.1, 3.0), (0.2, 4.0)]) is None
    assert quantile(0.5, [(math.inf, 4.0)]) is None
    assert quantile(0.5, []) is None


def test_quantile_repairs_counts_that_fall_with_the_bound() -> None:
    # 0.2's count below 0.1's is read as 10, as Prometheus does
    assert quantile(0.9, [(0.1, 10.0), (0.2, 8.0), (0.4, 20.0), (math.inf, 20.0)]) == pytest.approx(
        0.2 + 0.2 * 8 / 10
    )
    with pytest.raises(UsageError):
        quantile(1.5, [(math.inf, 1.0)])


# --------------------------------------------------------------------------- scrape


class _Metrics(BaseHTTPRequestHandler):
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = AFTER.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    handler = type("Handler", (_Metrics,), {"paths": paths})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_scrape_reads_metrics_from_the_base_url(metrics_server: tuple[str, list[str]]) -> None:
    url, paths = metrics_server
    snap = scrape(url)
    assert paths == ["/metrics"]
    assert snap.source == url + "/metrics"
    assert snap.requests == parse(AFTER, 0.0).requests
    assert abs(snap.when - time.time()) < 60


def test_scrape_ignores_proxy_settings(
    metrics_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = metrics_server
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert scrape(url + "/metrics").requests[("iris", "1", "v1", 200)] == 120.0


def test_scrape_of_a_wrong_path_names_the_status(metrics_server: tuple[str, list[str]]) -> None:
    url, _ = metrics_server
    with pytest.raises(StorageError, match="answered 404") as info:
        scrape(url + "/nothing")
    assert info.value.details["status"] == 404


def test_scrape_of_a_server_that_is_down_says_how_to_fix_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    with pytest.raises(StorageError, match=f"cannot read metrics from {url}") as info:
        scrape(url)
    assert "modelcycle serve" in (info.value.hint or "")


def test_scrape_of_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # the kernel accepts; nobody answers
        port = sock.getsockname()[1]
        with pytest.raises(StorageError, match="timed out") as info:
            scrape(f"http://127.0.0.1:{port}", timeout=0.2)
    assert "raise the timeout (0.2 s)" in (info.value.hint or "")


def test_scrape_refuses_what_is_not_an_http_url() -> None:
    with pytest.raises(UsageError, match="not an http"):
        scrape("127.0.0.1:8080")


# --------------------------------------------------------------------------- volume anomalies

# mean 11; squared deviations 1+1+0+4+4+1+1 = 12 over 6 -> sample std sqrt(2)
HISTORY = [10.0, 12.0, 11.0, 13.0, 9.0, 10.0, 12.0]


@pytest.mark.parametrize(
    ("current", "score", "anomalous"),
    [
        (16.0, 5 / math.sqrt(2), True),
        (14.0, 3 / math.sqrt(2), False),
        (6.0, -5 / math.sqrt(2), True),
    ],
)
def test_zscore_against_hand_computation(current: float, score: float, anomalous: bool) -> None:
    result = volume_anomaly(HISTORY, current)
    assert result.score == pytest.approx(score)
    assert result.anomalous is anomalous
    assert result.expected == pytest.approx(11.0)
    assert result.spread == pytest.approx(math.sqrt(2))
    assert ("above" if score > 0 else "below") in result.reason


def test_ewma_weighs_recent_points() -> None:
    history = [10.0, 20.0, 10.0, 20.0, 10.0]
    # alpha 0.5: means 10, 15, 12.5, 16.25, 13.125; variances 0, 25, 18.75, 23.4375, 21.484375
    ewma = volume_anomaly(history, 30.0, method="ewma", alpha=0.5)
    assert ewma.expected == pytest.approx(13.125)
    assert ewma.spread == pytest.approx(math.sqrt(21.484375))
    assert ewma.score == pytest.approx((30 - 13.125) / math.sqrt(21.484375))
    assert ewma.anomalous is True
    # the plain z-score (mean 14, std sqrt(30)) does not flag the same point
    plain = volume_anomaly(history, 30.0)
    assert plain.score == pytest.approx(16 / math.sqrt(30))
    assert plain.anomalous is False


def test_short_history_gives_no_verdict() -> None:
    result = volume_anomaly([1.0, 2.0, 3.0, 4.0], 100.0)
    assert (result.anomalous, result.score) == (None, None)
    assert "not enough history: 4 of the 5" in result.reason
    assert volume_anomaly([1.0, 2.0, 3.0, 4.0], 100.0, min_history=4).anomalous is True


def test_constant_history() -> None:
    same = volume_anomaly([5.0] * 6, 5.0)
    assert (same.score, same.anomalous) == (0.0, False)
    moved = volume_anomaly([5.0] * 6, 6.0, method="ewma")
    assert moved.anomalous is True
    assert moved.score == math.inf
    stored = json.loads(json.dumps(moved.to_dict(), allow_nan=False))
    assert (stored["score"], stored["anomalous"]) == (None, True)


@pytest.mark.parametrize(
    "options",
    [{"method": "mad"}, {"min_history": 1}, {"alpha": 0.0}, {"threshold": -1.0}],
)
def test_bad_anomaly_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        volume_anomaly(HISTORY, 1.0, **options)


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(UsageError, match="not a finite number"):
        volume_anomaly([*HISTORY, math.nan], 1.0)

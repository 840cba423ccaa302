"""The audit page's compact payloads: what a change's two sides differ in, the other
fields on one line each, and the whole payload only when the compact form lost some."""

from __future__ import annotations

from modelcycle.server.ui.audit import FULL_CHARS, VALUE_CHARS, Change, PayloadView


def test_before_and_after_show_only_what_changed() -> None:
    view = PayloadView.of(
        {
            "generation": 4,
            "before": {"routes": ["a@1"], "sticky": None, "gone": 1},
            "after": {"routes": ["a@1", "a@2"], "sticky": None, "new": "x"},
            "reason": "canary",
        }
    )
    assert view.changes == (
        Change("routes", '["a@1"]', '["a@1", "a@2"]'),
        Change("gone", "1", "–"),
        Change("new", "–", "x"),
    )
    assert view.fields == (("generation", "4"), ("reason", "canary"))
    assert view.full is None  # nothing was cut: the compact form is the whole payload


def test_created_and_deleted_list_every_key_and_from_to_is_a_change() -> None:
    created = PayloadView.of({"before": None, "after": {"every": "1m", "steps": 3}})
    assert created.changes == (Change("every", "–", "1m"), Change("steps", "–", "3"))
    deleted = PayloadView.of({"before": {"every": "1m"}, "after": None})
    assert deleted.changes == (Change("every", "1m", "–"),)
    stage = PayloadView.of({"from": "staging", "to": "production", "forced": False})
    assert stage.changes == (Change("", "staging", "production"),)
    assert stage.fields == (("forced", "false"),)
    assert PayloadView.of({}) == PayloadView((), (), None)


def test_long_values_are_cut_and_the_whole_payload_folds_out() -> None:
    view = PayloadView.of({"note": "x" * 500, "ok": True})
    [(key, note), ok] = view.fields
    assert key == "note" and len(note) == VALUE_CHARS and note.endswith("…")
    assert ok == ("ok", "true")
    assert view.full is not None and "x" * 500 in view.full
    lines = PayloadView.of({"message": "first line\nsecond line"})
    assert lines.fields == (("message", "first line second line"),)
    assert lines.full is not None  # the line break is only in the whole payload
    huge = PayloadView.of({"rows": list(range(20_000))})
    assert huge.full is not None and len(huge.full) < FULL_CHARS + 100
    assert huge.full.endswith("more characters (modelcycle events --json)")

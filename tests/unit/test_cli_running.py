"""How every command ends (`modelcycle.cli.running.run_app`), with the installed typer:
one line per error and no traceback, and one exit code per kind of ending."""

from __future__ import annotations

import pytest
import typer

from modelcycle.cli.running import INTERRUPTED, run_app
from modelcycle.core.errors import NotFoundError


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def act(what: str, times: int = 1) -> None:
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "missing":
            raise NotFoundError("no dataset named 'x'", hint="list them")
        if what == "exit3":
            raise typer.Exit(3)
        if what == "abort":
            raise typer.Abort()
        print(f"did {what} {times}")

    @app.command()
    def other() -> None:
        print("other")

    return app


def _run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    interrupted: str | None = INTERRUPTED,
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["modelcycle", *argv])
    with pytest.raises(SystemExit) as done:
        run_app(_app(), "modelcycle", interrupted=interrupted)
    out, err = capsys.readouterr()
    code = done.value.code
    assert isinstance(code, int)
    assert "Traceback" not in err
    return code, out, err


def test_a_command_that_succeeds_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, capsys, "act", "it", "--times", "2")[:2] == (0, "did it 2\n")


def test_usage_errors_exit_2_with_click_s_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(monkeypatch, capsys, "act", "it", "--bogus")
    assert code == 2 and "No such option: --bogus" in err
    code, _, err = _run(monkeypatch, capsys, "nope")
    assert code == 2 and "No such command 'nope'" in err
    code, _, err = _run(monkeypatch, capsys, "act", "it", "--times", "many")
    assert code == 2 and "Invalid value for '--times'" in err


def test_an_interrupt_says_so_and_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(monkeypatch, capsys, "act", "interrupt")
    assert (code, err.strip()) == (130, INTERRUPTED)
    code, _, err = _run(monkeypatch, capsys, "act", "interrupt", interrupted=None)
    assert (code, err) == (130, "")
    code, _, err = _run(monkeypatch, capsys, "act", "abort")
    assert (code, err.strip()) == (130, "aborted")


def test_modelcycle_errors_and_explicit_exits_keep_their_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(monkeypatch, capsys, "act", "missing")
    assert (code, err) == (3, "error: no dataset named 'x'\n  hint: list them\n")
    assert _run(monkeypatch, capsys, "act", "exit3")[0] == 3

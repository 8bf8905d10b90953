"""`dispenser.perf` and `dispenser bench`: registry, timer, table/JSON, command errors."""

from __future__ import annotations

import json

import pytest

from dispenser import __version__, perf
from dispenser.cli import main


def test_time_call_reports_a_median_over_at_least_three_rounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    durations = iter([9.0, 0.003, 0.001, 0.002])  # the untimed warm-up, then three rounds

    def call() -> None:
        now[0] += next(durations)

    monkeypatch.setattr(perf.time, "perf_counter", lambda: now[0])
    seconds, rounds = perf.time_call(call, perf.Options(min_time_s=0.0))
    assert rounds == 3
    assert seconds == pytest.approx(0.002)  # the median, the warm-up left out


def test_measurement_names_are_unique() -> None:
    perf.load_measurements()
    with pytest.raises(ValueError, match="duplicate"):
        perf.measurement("store.decide", "again")(lambda options: [])


def test_table_and_json_carry_the_machine_and_every_result() -> None:
    results = [perf.Result("a.stage", 1.5e-6, 10, "2.00x numpy"),
               perf.Result("a.memory", 3 * 2**20, 1, unit="B")]
    described = perf.machine()
    assert described["dispenser"] == __version__  # not "not installed" (the distribution
    table = perf.format_table(results, described)  # has its own name: pyproject.toml)
    for needle in ("cpu", "numba", "a.stage", "1.5 us", "2.00x numpy", "3 MiB"):
        assert needle in table
    data = json.loads(perf.to_json(results, described))
    assert data["machine"]["python"] == described["python"]
    assert [r["name"] for r in data["results"]] == ["a.stage", "a.memory"]


def test_bench_lists_the_store_measurements(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("store.decide", "store.admit", "store.sweep", "store.jit", "store.memory"):
        assert name in out


def test_bench_runs_from_the_package_and_prints_json(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "store.memory", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "bench: 1/1 store.memory\n"  # progress, off stdout
    data = json.loads(captured.out)
    (result,) = data["results"]
    assert result["name"] == "store.memory capacity=1024" and result["unit"] == "B"
    assert result["value"] >= 1024 * 128 * 4


def test_bench_refuses_an_unknown_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "store.nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dispenser: error: bench: unknown measurement 'store.nope'")
    assert "\n" not in err


def test_bench_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--sizes", "16,abc"])
    assert info.value.code == 2
    assert "--sizes" in capsys.readouterr().err


def test_the_quick_help_says_what_quick_does(capsys: pytest.CaptureFixture[str]) -> None:
    """It used to promise "about a minute" and "short timing": --quick changes only the
    sizes (the timing is --min-time's), and takes seconds."""
    from dispenser.store.bench import QUICK_SIZES

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    quick = text.rsplit("--quick", 1)[1].split("--sizes", 1)[0]  # the option, not usage
    assert f"store sizes {' and '.join(map(str, QUICK_SIZES))} only" in quick
    assert "minute" not in quick and "short timing" not in quick


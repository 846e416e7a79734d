"""Command lines fail fast: every argument is checked before any theory or Monte Carlo work.

Bad calls exit with status 2 and exactly one line on stderr, never a traceback; the
in-process tests replace the theory and the simulations by traps, so a check that ran
after work had started would fail them.  ``--help`` is plain text listing the activations.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pencils
import validation
from validation.cli import helpers, report, table
from validation.cli import main_job as dsm_main
from validation.simulation import sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_work(monkeypatch):
    """Make any theory or simulation call fail loudly."""

    def trap(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(pencils, "build", trap)
    monkeypatch.setattr(validation, "simulate", trap)
    monkeypatch.setattr(sweep, "run", trap)
    monkeypatch.setattr(sweep, "connect", trap)
    monkeypatch.setattr(dsm_main, "run", trap)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def _bad_calls(a_file):
    """(entry point, argv, fragment of the expected message)."""
    return [
        (dsm_main.main, ["--grid", "0"], "--grid: must be an integer between 2"),
        (dsm_main.main, ["--grid", "100000"], "--grid: must be an integer between 2"),
        (dsm_main.main, ["--d", "0"], "--d: must be an integer between 4"),
        (dsm_main.main, ["--d", "ten"], "--d: must be an integer, got 'ten'"),
        (dsm_main.main, ["--seeds", "1"], "--seeds: must be an integer >= 2"),
        (dsm_main.main, ["--m", "0"], "--m: m must be >= 1"),
        (dsm_main.main, ["--m", "2.5"], "--m: m must be an integer"),
        (dsm_main.main, ["--m", "4", "4"], "--m values repeat"),
        (dsm_main.main, ["--activation", "sine"], "unknown activation 'sine'; known: relu"),
        (dsm_main.main, ["--t", "-1"], "--t: must be > 0"),
        (dsm_main.main, ["--lam", "nan"], "--lam: must be finite"),
        (dsm_main.main, ["--psi-n", "0"], "--psi-n: must be > 0"),
        (dsm_main.main, ["--out", str(a_file)], "is an existing file, not a folder"),
        (dsm_main.main, ["--out", str(a_file / "sub")], "is not writable"),
        (dsm_main.main, ["--bogus"], "unrecognized arguments: --bogus"),
        (table.main, ["--d", "100"], "--d needs at least 2 distinct values"),
        (table.main, ["--d", "100", "100"], "--d values repeat"),
        (table.main, ["--seeds", "0"], "--seeds: must be an integer >= 2"),
        (table.main, ["--quick", "--d", "50", "100"], "--quick sets d = 50 100 200"),
        (table.main, ["--scheduler", "nowhere"], "scheduler must be 'local' or a Dask scheduler address"),
        (table.main, ["--workers", "2"], "--workers only applies to --scheduler local"),
        (table.main, ["--quick", "--out", str(a_file)], "is an existing file, not a folder"),
        (report.main, ["--activation", "sine"], "unknown activation 'sine'"),
        (report.main, ["--psi-p", "1", "1"], "--psi-p values repeat"),
        (report.main, ["--m", "inf", "inf"], "--m values repeat"),
        (report.main, ["--d", "20"], "--d needs at least 2 distinct values"),
    ]


def test_bad_calls_fail_before_any_work_with_one_line(no_work, a_file, capsys):
    for entry, argv, fragment in _bad_calls(a_file):
        with pytest.raises(SystemExit) as exit_info:
            entry(argv)
        assert exit_info.value.code == 2, (argv, exit_info.value.code)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert fragment in lines[0], (argv, lines[0])
        assert "Traceback" not in err and out == ""


def test_unknown_activation_lists_every_known_name(no_work, capsys):
    with pytest.raises(SystemExit):
        dsm_main.main(["--activation", "sine"])
    err = capsys.readouterr().err
    for name in pencils.KNOWN_ACTIVATIONS:
        assert name in err


def test_good_arguments_are_parsed_without_work(no_work, tmp_path):
    args = dsm_main.parse_args(["--activation", "TANH", "--m", "1", "inf", "--grid", "8", "--d", "40",
                                "--out", str(tmp_path / "new" / "folder")])
    assert args.activation == "tanh" and args.m == [1, math.inf] and args.grid == 8 and args.d == 40
    assert (tmp_path / "new" / "folder").is_dir()
    t = table.parse_args(["--quick", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:8786"])
    assert t.d == [50, 100, 200] and t.seeds == 4 and t.scheduler == "tcp://127.0.0.1:8786"
    assert table.parse_args(["--d", "400", "100", "--out", str(tmp_path)]).d == [100, 400]


@pytest.mark.parametrize("module", ["validation.main", "validation.table", "validation.report"])
def test_help_is_plain_text_and_lists_activations(module):
    ap = {"validation.main": dsm_main._parser, "validation.table": table._parser,
          "validation.report": report._parser}[module]()
    text = ap.format_help()
    assert "``" not in text and ":func:" not in text and ":mod:" not in text
    if module != "validation.table":
        for name in pencils.KNOWN_ACTIVATIONS:
            assert name in text


def test_real_entry_points_exit_2_with_one_line_and_no_traceback(a_file):
    """The installed commands (in subprocesses, started together): status, one line, no traceback."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    calls = [["-m", "validation.main", "--grid", "0"],
             ["-m", "validation.main", "--out", str(a_file / "sub")],
             ["-m", "validation.table", "--scheduler", "nowhere"],
             ["-m", "validation.report", "--activation", "sine"]]
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, *c], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in calls]
    outs = [p.communicate(timeout=120) for p in procs]
    elapsed = time.perf_counter() - start
    for call, proc, (out, err) in zip(calls, procs, outs):
        assert proc.returncode == 2, (call, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (call, err)
        assert err.startswith(("dsm-curves: error:", "python -m validation.")), err
    # Generous bound: four interpreters importing numpy/sympy on a shared two-core machine;
    # a check that ran after the theory (tens of seconds) would blow it.
    assert elapsed < 60, elapsed


def test_save_table_writes_converged_column_and_sidecar(tmp_path):
    rows = [dict(x=1.0, y=math.nan, converged=False), dict(x=2.0, y=3.0, converged=True)]
    sidecar = helpers.save_table(tmp_path / "t.csv", rows, helpers.jsonable(dict(m=[1, math.inf])),
                                  "dsm-curves --grid 8")
    meta = json.loads(sidecar.read_text())
    assert meta["command"] == "dsm-curves --grid 8" and meta["parameters"] == {"m": [1, "inf"]}
    assert meta["version"] == helpers.package_version() and meta["columns"] == ["x", "y", "converged"]
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "x,y,converged"
    with pytest.raises(ValueError, match="converged"):
        helpers.save_table(tmp_path / "u.csv", [dict(x=1.0)], {}, "")


def test_extrapolate_checks_that_each_result_d_matches_its_key():
    from types import SimpleNamespace as R

    def res(d, v):
        return R(problem=R(d=d, psi_n=1, psi_p=1, m=1, t=0.5, lam=0.1, a=math.exp(-0.5)),
                 test=v, test_se=1e-3, train=v, train_se=1e-3)

    good = {100: res(100, 0.31), 200: res(200, 0.305)}
    assert validation.extrapolate(good).d_values == (100, 200)
    with pytest.raises(ValueError, match="under key d=200 was simulated at d=400"):
        validation.extrapolate({100: res(100, 0.31), 200: res(400, 0.3)})
    with pytest.raises(ValueError, match="integers >= 1"):
        validation.extrapolate({"100": res(100, 0.31), 200: res(200, 0.3)})
    with pytest.raises(ValueError, match="same d"):
        validation.extrapolate([res(100, 0.31), res(100, 0.3)])

"""The batch engine on a phantom cohort: 20 studies (3 broken), locally and on a real Dask LocalCluster,
kill-and-resume, Ctrl-C, timeouts, crashes, resume keys and the cohort table.

Slowest tests (2 cores): the Dask comparison (~8 s, cluster start included), kill-and-resume (~10 s) and,
marked slow, analyze locally and on Dask after a LocalCluster started (~15-25 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from batch_cohort import BROKEN, base_studies, make_cohort
from bmepipe.batch import build_summary, discover_studies, load_cohort, run_batch, study_folders
from bmepipe.cli import main as cli_main

TESTS = Path(__file__).resolve().parent
N_STUDIES = 20


@pytest.fixture(scope="module")
def bases():
    return base_studies(n=2, matrix=64, slices=8)


@pytest.fixture(scope="module")
def cohort(bases, tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort") / "root", n=N_STUDIES, broken=BROKEN, bases=bases)


@pytest.fixture(scope="module")
def small(bases, tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("small") / "root", n=4, broken=("partial",), bases=bases, seed=7)


@pytest.fixture(scope="module")
def local_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    result = run_batch(cohort.root, out, job="inspect", workers=2)
    return out, result


def _expected_status(cohort, out) -> dict:
    """study folder name -> 'ok' / broken kind, through the cohort's own salt (independent of the summary)."""
    refs = discover_studies(cohort.root, salt=load_cohort(out)["salt"])
    return {r.study_id: cohort.kinds[r.study_instance_uid] for r in refs}


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    """Without run timings, rows in a canonical order."""
    cols = [c for c in df.columns if not c.startswith("time_")]
    df = df[cols].sort_values(["study", "side"]).reset_index(drop=True).astype(object)
    return df.where(df.notna(), None)


def _check_complete(out: Path, expected: dict) -> pd.DataFrame:
    """Every study exactly once, finished, parseable; nothing half-written left; tables agree."""
    studies = out / "studies"
    names = sorted(p.name for p in studies.iterdir())
    assert names == sorted(expected), "temporary or missing study folders"
    for name in names:
        done = json.loads((studies / name / "DONE.json").read_text())
        assert done["study"] == name
        assert done["status"] == ("ok" if expected[name] == "ok" else "failed")
        if done["status"] == "ok":
            report = json.loads((studies / name / "report.json").read_text())
            assert report["inputs"]["series_used"][0]["role"] == "fluid_sensitive"
    csv = pd.read_csv(out / "summary.csv")
    parquet = pd.read_parquet(out / "summary.parquet")
    assert len(csv) == 2 * len(expected) and sorted(set(csv["study"])) == sorted(expected)
    assert csv.groupby("study").size().eq(2).all()
    pd.testing.assert_frame_equal(_comparable(csv), _comparable(parquet))
    for study, rows in csv.groupby("study"):
        want = "ok" if expected[study] == "ok" else "failed"
        assert (rows["status"] == want).all(), (study, expected[study], rows["status"].tolist())
    return csv


# ------------------------------------------------------------------------------------------ cohort runs
def test_local_batch_finishes_the_cohort_and_reports_the_broken_studies(cohort, local_run):
    out, result = local_run
    expected = _expected_status(cohort, out)
    assert sorted(expected.values()).count("ok") == N_STUDIES - 3
    csv = _check_complete(out, expected)
    assert (result.n_studies, result.n_ok, result.n_failed, result.n_skipped) == (N_STUDIES, 17, 3, 0)
    failed = csv[csv["status"] == "failed"]
    assert set(failed["study"]) == {s for s, k in expected.items() if k != "ok"}
    reasons = failed.drop_duplicates("study").set_index("study")["error"]
    assert not reasons.str.contains("\n|Traceback").any()
    words = {"corrupt": "truncated", "partial": "missing slice", "ct": "CT"}
    for study, reason in reasons.items():  # each reason names its problem
        assert words[expected[study]] in reason, (expected[study], reason)
    ok = csv[csv["status"] == "ok"]
    assert ok["series_fluid"].notna().all() and ok["series_fluid_kind"].notna().all()
    assert (ok["n_series"] == 2).all()
    assert (out / "batch.log").read_text().count(" failed ") >= 3


def test_no_patient_identifiers_in_names_logs_or_tables(cohort, local_run):
    out, _ = local_run
    texts = [(out / "batch.log").read_text(), (out / "summary.csv").read_text()]
    texts += [p.read_text() for p in (out / "studies").rglob("*.json")]
    texts += [p.name for p in (out / "studies").rglob("*")]
    blob = "\n".join(texts)
    assert "DOE" not in blob.upper() and "JANE" not in blob.upper()
    for uid, pid in cohort.patient_ids.items():
        assert pid not in blob and uid not in blob
    assert str(cohort.root) not in blob  # paths in messages are relative to ROOT


def test_rerun_skips_finished_studies_and_rebuilds_the_same_summary(cohort, local_run):
    out, _ = local_run
    before = pd.read_csv(out / "summary.csv")
    stamps = {p: p.stat().st_mtime_ns for p in (out / "studies").glob("*/DONE.json")}
    result = run_batch(cohort.root, out, job="inspect", workers=2)
    assert (result.n_skipped, result.n_failed) == (N_STUDIES, 3)
    assert {p: p.stat().st_mtime_ns for p in (out / "studies").glob("*/DONE.json")} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), before)
    pd.testing.assert_frame_equal(build_summary(out), result.summary)


@pytest.fixture
def restore_environ():
    """Undo what a LocalCluster writes into ``os.environ``.

    Its nannies set their worker settings (``MALLOC_TRIM_THRESHOLD_``, thread
    limits, ``PYTHONHASHSEED``) in this process's environment before spawning
    and never restore it, so every process started later in the test session
    would inherit them.
    """
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_dask_local_cluster_gives_the_same_outputs(cohort, local_run, small, tmp_path, restore_environ):
    from distributed import Client, LocalCluster

    local_out, _ = local_run
    out = tmp_path / "dask_out"
    out.mkdir()
    # same cohort.json = same salt = same pseudonyms (how to share names between output folders)
    (out / "cohort.json").write_bytes((local_out / "cohort.json").read_bytes())
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                         dashboard_address=None) as cluster, Client(cluster) as client:
        result = run_batch(cohort.root, out, job="inspect", client=client)
        assert len({w["host"] for w in client.scheduler_info()["workers"].values()}) == 1
        # the command line's --scheduler reaches the same cluster
        code = cli_main(["batch", str(small.root), "-o", str(tmp_path / "cli_out"), "--job", "inspect",
                         "--scheduler", cluster.scheduler_address, "--no-progress"])
        assert code == 0 and len(pd.read_csv(tmp_path / "cli_out" / "summary.csv")) == 8
        # the per-study timeout applies on Dask too
        t0 = time.perf_counter()
        slow = run_batch(small.root, tmp_path / "dask_timeout", job="batch_cohort:sleepy", client=client,
                         timeout_s=1.0)
        assert time.perf_counter() - t0 < 20
        # a Dask worker dying under a study: the study still gets its failed row (a cohort of that study
        # alone: with no retries, Dask also fails any other task it had assigned to the dying worker)
        lost = run_batch(_one_study_root(small, 0, tmp_path / "alone"), tmp_path / "dask_lost", job="batch_cohort:kill_dask_worker", client=client,
                         params={"marker": "PAT0070000"})
    assert (result.n_ok, result.n_failed) == (17, 3)
    assert lost.n_failed == 1 and lost.summary["error"].str.startswith("Dask task failed: KilledWorker").all()
    _check_complete(out, _expected_status(cohort, out))
    pd.testing.assert_frame_equal(_comparable(pd.read_csv(out / "summary.csv")),
                                  _comparable(pd.read_csv(local_out / "summary.csv")))
    assert slow.n_failed == 4 and slow.summary["error"].str.startswith("timed out after 1 s").all()


@pytest.mark.slow
def test_analyze_job_after_a_local_cluster_started_runs_locally_and_on_dask(tmp_path, restore_environ):
    """Regression (issue 9): once a LocalCluster runs in the process, every study process inherits the
    nannies' MALLOC_TRIM_THRESHOLD_, under which glibc unmaps a freed buffer above 128 KiB at once, so
    reading memory after it was freed faults instead of silently returning stale bytes (as the NumPy view
    of a temporary SimpleITK image in normalize.grid did, fixed in 72fb24e). With studies large enough for
    that (128 x 128 x 10), analyze must finish, locally and on Dask, with the same table.
    """
    from distributed import Client, LocalCluster

    cohort = make_cohort(tmp_path / "root", n=2, broken=(), bases=base_studies(n=1, matrix=128, slices=10))
    params = {"formats": ("json",)}
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert os.environ.get("MALLOC_TRIM_THRESHOLD_")  # the condition of the crash is really there
        local = run_batch(cohort.root, tmp_path / "local", workers=2, params=params)
        (tmp_path / "dask").mkdir()
        (tmp_path / "dask" / "cohort.json").write_bytes((tmp_path / "local" / "cohort.json").read_bytes())
        on_dask = run_batch(cohort.root, tmp_path / "dask", client=client, params=params)
    for result in (local, on_dask):
        errors = set(result.summary["error"].dropna())
        assert (result.job, result.n_ok, result.n_failed) == ("analyze", 2, 0), errors
    pd.testing.assert_frame_equal(_comparable(pd.read_csv(tmp_path / "dask" / "summary.csv")),
                                  _comparable(pd.read_csv(tmp_path / "local" / "summary.csv")))


# ------------------------------------------------------------------------------------------ interruption
# `python -m bmepipe` with Ctrl-C as from a terminal: a process started with SIGINT ignored (any background job of a
# non-interactive shell, e.g. `bash .ci/run &`) passes that on, and Python then never raises KeyboardInterrupt
_RUN_CLI = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.argv[0] = 'bmepipe'; runpy.run_module('bmepipe', run_name='__main__')")


def _cli(root, out, *extra, sleep="0.4", gate=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               BMEPIPE_TEST_JOB_SLEEP=sleep)
    if gate is not None:
        env["BMEPIPE_TEST_JOB_GATE"] = str(gate)
    cmd = [sys.executable, "-c", _RUN_CLI, "batch", str(root), "-o", str(out), "--workers", "2",
           "--job", "batch_cohort:slow_inspect", "--no-progress", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _output_once_stopped(proc, failure: str, limit_s: float = 20.0) -> tuple:
    """``proc``'s (stdout, stderr) once it exits; killed, and the test failed with ``failure``, after ``limit_s``."""
    try:
        return proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(failure)


def _wait_finished(out: Path, n: int, proc, limit_s: float = 90.0) -> None:
    t0 = time.perf_counter()
    while len(study_folders(out)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.perf_counter() - t0 < limit_s, "batch too slow"
        time.sleep(0.02)


def test_killed_batch_resumes_to_a_complete_uncorrupted_cohort(cohort, tmp_path):
    import psutil

    out = tmp_path / "out"
    proc = _cli(cohort.root, out)
    _wait_finished(out, 4, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "worker processes outlived the killed batch"
    finished = {p.name: (p / "DONE.json").read_bytes() for p in study_folders(out)}
    assert 4 <= len(finished) < N_STUDIES
    assert not (out / "summary.csv").exists()

    proc = _cli(cohort.root, out, sleep="0")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"{len(finished)} finished earlier" in stdout
    for name, done in finished.items():  # finished studies were kept, not redone
        assert (out / "studies" / name / "DONE.json").read_bytes() == done
    _check_complete(out, _expected_status(cohort, out))


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing_half_finished(small, tmp_path):
    out = tmp_path / "out"
    # only the first study runs, the others wait at the gate: the batch cannot finish before the signal arrives,
    # however loaded the machine
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = _cli(small.root, out, sleep="0.4", gate=gate)
    _wait_finished(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = _output_once_stopped(proc, "the batch did not stop within 20 s of SIGINT")
    assert proc.returncode == 130
    assert stderr.strip().count("\n") == 0 and "interrupted" in stderr and "resume" in stderr
    for folder in (out / "studies").iterdir():  # an unfinished study never looks finished
        assert (folder / "DONE.json").exists() == (".partial-" not in folder.name)
    proc = _cli(small.root, out, sleep="0")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    _check_complete(out, _expected_status(small, out))


_TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine) if sys.platform.startswith("linux") else None


@pytest.mark.skipif(_TGKILL is None, reason="needs Linux's tgkill(2) (x86-64 or arm64) to signal one thread")
def test_ctrl_c_delivered_to_a_worker_thread_still_stops_the_batch(small, tmp_path):
    """A terminal's SIGINT goes to the process, and the kernel may hand it to any of its threads: Python raises
    KeyboardInterrupt only in the main thread, so the batch must not sleep there until a study finishes."""
    import ctypes

    out, gate = tmp_path / "out", tmp_path / "gate"
    gate.mkdir()
    proc = _cli(small.root, out, gate=gate)
    _wait_finished(out, 1, proc)
    others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
    assert others, "the batch runs its studies from threads"
    assert ctypes.CDLL(None).syscall(_TGKILL, proc.pid, others[0], int(signal.SIGINT)) == 0
    _, stderr = _output_once_stopped(proc, "SIGINT delivered to a worker thread did not stop the batch within 20 s")
    assert proc.returncode == 130 and "interrupted" in stderr


# ------------------------------------------------------------------------------------------ isolation
def test_timeout_kills_a_hung_study_and_the_next_one_runs(small, tmp_path):
    import psutil

    t0 = time.perf_counter()
    result = run_batch(small.root, tmp_path / "out", job="batch_cohort:sleepy", workers=1, timeout_s=0.5)
    assert time.perf_counter() - t0 < 15  # 4 studies of 60 s each, each killed after 0.5 s
    assert result.n_failed == 4
    assert result.summary["error"].str.fullmatch(r"timed out after 0\.5 s \(worker process killed\)").all()
    assert not [p for p in psutil.Process().children(recursive=True) if "bmepipe.batch._child" in " ".join(p.cmdline())]


def test_crash_and_exception_fail_only_their_study(small, tmp_path):
    out = tmp_path / "out"
    result = run_batch(small.root, out, job="batch_cohort:chaos", workers=2,
                       params={"crash": "PAT0070000", "fail": "PAT0070001"})
    rows = result.summary.drop_duplicates("study").set_index("study")
    expected = _expected_status(small, out)
    refs = {r.study_id: r for r in discover_studies(small.root, salt=load_cohort(out)["salt"])}
    for study, row in rows.iterrows():
        files = " ".join(refs[study].files)
        if "PAT0070000" in files:
            assert row["status"] == "failed" and row["error"].startswith("worker process died (signal SIGSEGV)")
            # the crashed process's Python stack (faulthandler, via job.log) is the study's error.txt
            stack = (out / "studies" / study / "error.txt").read_text()
            assert stack.startswith("Fatal Python error: Segmentation fault") and ", line " in stack
            assert "in chaos" in stack and "Extension modules" not in stack
        elif "PAT0070001" in files:
            assert row["status"] == "failed"
            assert row["error"].startswith("RuntimeError: cannot analyse part_a/[redacted]/")  # relative, scrubbed
            assert "Traceback" in (out / "studies" / study / "error.txt").read_text()
            assert (out / "studies" / study / "job.log").read_text() == "about to fail\n"
        else:
            assert row["status"] == ("ok" if expected[study] == "ok" else "failed")
    assert "RuntimeError: cannot analyse" in (out / "batch.log").read_text()  # traceback in the log
    assert result.n_failed == 3


def test_resume_key_retry_failed_force_and_parameters(small, tmp_path):
    out = tmp_path / "out"
    first = run_batch(small.root, out, job="inspect")
    assert (first.n_ok, first.n_failed) == (3, 1)
    ran = []
    again = run_batch(small.root, out, job="inspect", retry_failed=True, on_study=lambda o: ran.append(o.study_id))
    assert ran == [s for s, k in _expected_status(small, out).items() if k != "ok"] and again.n_skipped == 3
    ran.clear()
    run_batch(small.root, out, job="inspect", force=True, on_study=lambda o: ran.append(o.study_id))
    assert len(ran) == 4
    ran.clear()
    run_batch(small.root, out, job="batch_cohort:chaos", params={"crash": "", "fail": ""},
              on_study=lambda o: ran.append(o.study_id))
    assert len(ran) == 4  # another job or other parameters: nothing is reused
    ran.clear()
    # a changed input (one instance removed) redoes exactly that study
    victim = sorted(small.files[small.uids[0]])[0]
    os.rename(victim, tmp_path / "elsewhere")
    try:
        run_batch(small.root, out, job="batch_cohort:chaos", params={"crash": "", "fail": ""},
                  on_study=lambda o: ran.append(o.study_id))
    finally:
        os.rename(tmp_path / "elsewhere", victim)
    assert len(ran) == 1


def test_summary_flattens_the_report_contract(small, tmp_path):
    out = tmp_path / "out"
    result = run_batch(small.root, out, job="batch_cohort:contract_job")
    df = pd.read_parquet(out / "summary.parquet")
    from batch_cohort import contract_job

    refs = {r.study_id: r for r in discover_studies(small.root, salt=load_cohort(out)["salt"])}
    for study, rows in df.groupby("study"):
        report = contract_job(refs[study], None)  # what the job wrote, recomputed
        right = rows[rows["side"] == "right"].iloc[0]
        left = rows[rows["side"] == "left"].iloc[0]
        r = report["sides"]["right"]
        assert right["status"] == "analysed" and pd.isna(right["error"])
        assert left["status"] == "failed" and left["error"] == "femur not found"
        assert [right[f"femoral_head_center_{a}_mm"] for a in "xyz"] == r["femoral_head"]["center_lps_mm"]
        assert right["femoral_head_radius_mm"] == r["femoral_head"]["radius_mm"]
        assert right["region_femoral_head_volume_ml"] == r["regions"]["femoral_head"]["volume_ml"]
        assert right["bme_fraction_femoral_head"] == r["bme"]["fraction"]["femoral_head"]
        assert right["bme_volume_ml"] == r["bme"]["volume_ml"]
        assert (right["avn_jic_type"], right["avn_kerboul_angle_deg"]) == ("C1", 210.0)
        assert pd.isna(right["sif_line_length_mm"]) and right["effusion_ml"] == 3.25
        assert (right["pattern_label"], right["pattern_score"]) == ("avn_like", 0.75)
        assert (right["series_fluid"], right["series_t1_kind"]) == ("STIR COR", "t1")
        assert right["qc_flags"] == "snr_low" and left["qc_flags"] == "snr_low;fat_sat_failed"
        assert (right["time_load_s"], right["time_segment_s"]) == (0.5, 2.0)
    assert list(df["side"][:2]) == ["right", "left"] and df["study"].is_monotonic_increasing
    assert len(df) == 8 and result.n_failed == 0


def test_unidentified_dicom_files_become_a_failed_row(tmp_path):
    root = tmp_path / "root" / "scanner_dump"
    root.mkdir(parents=True)
    (root / "x.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"junk" * 5)
    result = run_batch(tmp_path / "root", tmp_path / "out", job="inspect")
    assert result.n_failed == 1 and list(result.summary["status"]) == ["failed", "failed"]
    assert result.summary["error"].str.startswith("1 DICOM file(s) in scanner_dump not attributable").all()


def test_cli_dry_run_and_bad_options(small, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["batch", str(small.root), "-o", str(out), "--job", "inspect", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 studies, 4 to run with job inspect" in text and not (out / "studies").exists()
    assert cli_main(["batch", str(small.root), "-o", str(out), "--job", "no_such_module:f"]) == 2
    assert "cannot import job" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["batch", str(small.root), "-o", str(out), "--workers", "0"])
    assert cli_main(["batch", str(small.root), "-o", str(out), "--job", "inspect", "--formats", "html"]) == 2
    assert "apply to the analyze job only" in capsys.readouterr().err
    assert cli_main(["batch", str(small.root), "-o", str(out), "--formats", "html,pdf", "--dry-run"]) == 2
    assert "unknown output format(s) pdf" in capsys.readouterr().err
    # analyze parameters are part of the resume key: same configuration, same key; any change, another key
    from bmepipe.batch import params_hash
    from bmepipe.config import load_config

    key = params_hash("analyze", {"config": load_config(None)})
    assert key == params_hash("analyze", {"config": load_config(None)})
    assert key != params_hash("analyze", {"config": load_config(None).updated(formats=("json", "html"))})
    assert key != params_hash("analyze", {"config": load_config(None).updated(subchondral_depth_mm=4.0)})


def test_finalize_replaces_an_older_result_and_never_loses_it(tmp_path):
    from bmepipe.batch.engine import _finalize
    from bmepipe.errors import OutputError

    final = tmp_path / "S1"
    final.mkdir()
    (final / "DONE.json").write_text("old")
    partial = tmp_path / "S1.partial-0123abcd"
    partial.mkdir()
    (partial / "DONE.json").write_text("new")
    _finalize(partial, final)
    assert (final / "DONE.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["S1"]
    with pytest.raises(OutputError, match="vanished"):  # e.g. removed by a newer run: the result stays
        _finalize(tmp_path / "S1.partial-deadbeef", final)
    assert (final / "DONE.json").read_text() == "new"


def _process_infos(out: Path) -> list[dict]:
    return [json.loads((p / "report.json").read_text()) for p in study_folders(out)]


def test_worker_processes_are_separate_reused_recycled_and_thread_limited(small, tmp_path):
    reused = _process_infos(run_batch(small.root, tmp_path / "a", job="batch_cohort:process_info",
                                      threads_per_study=1).out)
    assert len({i["pid"] for i in reused}) == 1 and reused[0]["pid"] != os.getpid()
    assert {i["omp"] for i in reused} == {"1"}
    recycled = _process_infos(run_batch(small.root, tmp_path / "b", job="batch_cohort:process_info",
                                        max_studies_per_process=1, threads_per_study=3).out)
    assert len({i["pid"] for i in recycled}) == 4 and {i["omp"] for i in recycled} == {"3"}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P (safe path) is new in 3.11")
def test_a_bmepipe_folder_in_the_current_folder_does_not_shadow_the_workers_bmepipe(small, tmp_path, monkeypatch):
    (tmp_path / "bmepipe").mkdir()
    (tmp_path / "bmepipe" / "__init__.py").write_text("raise ImportError('a stray bmepipe folder')\n")
    monkeypatch.chdir(tmp_path)
    result = run_batch(small.root, tmp_path / "out", job="batch_cohort:process_info")
    assert (result.n_ok, result.n_failed) == (4, 0)


def test_analyze_adapter_passes_exactly_the_study(small, tmp_path, monkeypatch):
    import bmepipe.batch.jobs as jobs

    seen = {}

    def fake_analyze(source, out_dir=None, *, record_timings=False, seed=0, pseudonym=None):
        seen.update(files=sorted(source), out_dir=out_dir, params=(record_timings, seed, pseudonym))

    monkeypatch.setattr(jobs, "_analyze_function", lambda: fake_analyze)
    ref = next(r for r in discover_studies(small.root) if r.study_instance_uid == small.uids[1])  # split study
    jobs.analyze_job(ref, tmp_path, seed=3)
    assert seen["files"] == sorted(small.files[small.uids[1]])
    assert seen["out_dir"] == tmp_path and seen["params"] == (True, 3, ref.study_id)
    assert jobs.resolve_job("auto")[1] == "analyze"  # analyze is the default once it exists
    monkeypatch.setattr(jobs, "_analyze_function", lambda: None)
    assert jobs.resolve_job("auto")[1] == "inspect"


def _one_study_root(cohort, index: int, root: Path) -> Path:
    """A root holding only study ``index`` of ``cohort`` (symbolic links)."""
    for f in cohort.files[cohort.uids[index]]:
        (root / Path(f).parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(f, root / Path(f).parent.name / Path(f).name)
    return root


def test_analyze_job_end_to_end_feeds_the_summary(small, tmp_path):
    """The default job is bmepipe.analyze; its report.json is what the cohort table shows."""
    root = _one_study_root(small, 0, tmp_path / "root")
    result = run_batch(root, tmp_path / "out", params={"formats": ("json",)})
    assert result.job == "analyze" and result.n_failed == 0
    (folder,) = study_folders(result.out)
    report = json.loads((folder / "report.json").read_text())
    rows = pd.read_csv(result.summary_csv).set_index("side")
    for side in ("right", "left"):
        data = report["sides"][side]
        assert rows.loc[side, "status"] == data["status"] in ("analysed", "failed")
        assert rows.loc[side, "pattern_label"] == data["pattern"]["label"]
    used = {s["role"]: s for s in report["inputs"]["series_used"]}
    assert rows.loc["right", "series_fluid"] == used["fluid_sensitive"]["series_description"]
    assert rows.loc["right", "time_normalize_s"] == report["timings_s"]["normalize"]


def test_a_job_that_cannot_reach_the_workers_is_refused_before_any_study(small, tmp_path):
    import threading

    from bmepipe.errors import ConfigError

    lock = threading.Lock()  # not picklable, even by cloudpickle
    with pytest.raises(ConfigError, match="cannot be sent to worker processes"):
        run_batch(small.root, tmp_path / "out", job=lambda ref, out_dir: lock)
    assert not (tmp_path / "out" / "studies").exists()


def test_lambda_jobs_from_the_python_api_run_in_workers(small, tmp_path):
    result = run_batch(small.root, tmp_path / "out", job=lambda ref, out_dir: {"files": len(ref.files)})
    reports = [json.loads((p / "report.json").read_text()) for p in study_folders(result.out)]
    assert sorted(r["files"] for r in reports) == sorted(len(f) for f in small.files.values())

"""Errors a user can act on, from the real command line."""

import os
import socket
import time

from tests.conftest import run_harness


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_missing_key_stops_at_once_naming_the_variable(tmp_path):
    import subprocess
    import sys

    env = _without("DEEPSEEK_API_KEY")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "model=v4-flash", "task=mmlu_pro",
                           f"results_dir={tmp_path}"], capture_output=True, text=True, env=env, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    elapsed = time.monotonic() - started
    assert proc.returncode == 2
    assert "DEEPSEEK_API_KEY" in proc.stderr and "conf/model/v4-flash.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing started, nothing half-written
    assert elapsed < 15, elapsed  # no dataset, lm-eval index or MLflow work before the check


def test_unknown_model_lists_the_available_ones(tmp_path):
    proc = run_harness("model=v5-ultra", f"results_dir={tmp_path}")
    assert proc.returncode != 0
    for name in ("smollm2-local", "v4-flash", "v4-pro", "v4-flash-vllm", "gpt-5.5", "gemini-3.1-pro"):
        assert name in proc.stderr


def test_unknown_task_lists_the_available_ones(tmp_path):
    proc = run_harness("task=mmlu_pr", f"results_dir={tmp_path}")
    assert proc.returncode != 0
    assert "gsm8k" in proc.stderr and "mmlu_pro" in proc.stderr


def test_unreachable_endpoint_names_the_url(tmp_path, gsm8k_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the run: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    proc = run_harness("model=openai-compatible", f"model.base_url={url}", "model.max_retries=0", "limit=1",
                       f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", "tracking=none", f"results_dir={tmp_path}")
    assert proc.returncode == 2
    assert url in proc.stderr and "cannot reach" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("runs/*/summary.json"))


def test_typo_in_a_key_is_refused_before_running(tmp_path):
    proc = run_harness("model.temprature=0.5", f"results_dir={tmp_path}")
    assert proc.returncode != 0
    assert "temprature" in proc.stderr


def test_an_unknown_key_is_refused_even_when_added_with_plus(tmp_path):
    """Hydra suggests `+` for a key the schema lacks; with it the run went on and ignored the setting."""
    for override, named in (("+model.generaton.max_tokens=5", "model.generaton (did you mean model.generation?)"),
                            ("+limt=3", "limt (did you mean limit?)"),
                            # without +, checked before Hydra (whose message suggests adding + and exits 1)
                            ("model.generaton.max_tokens=5", "model.generaton (did you mean model.generation?)"),
                            ("limt=3", "limt (did you mean limit?)"),
                            ("model.generation.max_tokns=5", "model.generation.max_tokns (did you mean "
                                                             "model.generation.max_tokens?)")):
        proc = run_harness("dry_run=true", override, f"results_dir={tmp_path}")
        assert proc.returncode == 2, proc.stderr[-1500:]
        assert f"unknown config key: {named}" in proc.stderr and "Traceback" not in proc.stderr


def _harness_in_mount(mount: list[str], results_dir) -> "subprocess.CompletedProcess":
    """`python -m harness dry_run=true` with results_dir on a special mount (bwrap: read-only, tiny tmpfs)."""
    import subprocess
    import sys

    import pytest

    from harness.sandbox.bwrap import find_bwrap

    found = find_bwrap()
    if found is None:
        pytest.skip("no bwrap to make the mount with")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([found[0], "--bind", "/", "/", *mount, "--dev", "/dev", "--proc", "/proc", "--",
                           sys.executable, "-m", "harness", "dry_run=true", "progress=false",
                           f"results_dir={results_dir}"], capture_output=True, text=True, timeout=300, cwd=root)
    if proc.returncode != 2 and proc.stderr.startswith("bwrap:"):
        pytest.skip(f"bwrap cannot mount here: {proc.stderr[-300:]}")
    return proc


def test_a_read_only_results_dir_is_one_line_naming_the_fix(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    proc = _harness_in_mount(["--ro-bind", str(readonly), str(readonly)], readonly)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Read-only file system" in proc.stderr and "results_dir=" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_is_one_line_naming_the_fix(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    proc = _harness_in_mount(["--size", "40960", "--tmpfs", str(full)], full)  # 40 KiB: MLflow's store does not fit
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "disk is full" in proc.stderr and "tracking=none" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_data_is_one_line_and_the_run_log_says_why(tmp_path, gsm8k_dir):
    import shutil

    bad = tmp_path / "gsm8k"
    shutil.copytree(gsm8k_dir, bad)
    (bad / "main" / "test-00000-of-00001.parquet").write_bytes(b"not parquet at all")
    results = tmp_path / "results"
    proc = run_harness("dry_run=true", f"task.dataset_path={bad}", "data.allow_hash_mismatch=true",
                       f"results_dir={results}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot read the data of task gsm8k" in proc.stderr and "python -m harness.data pull" in proc.stderr
    assert "Traceback" not in proc.stderr
    (run_log,) = results.glob("runs/*/run.log")
    assert "run failed: DataError: cannot read the data of task gsm8k" in run_log.read_text()


def test_claims_of_a_run_folder_without_summary_is_one_line(tmp_path):
    import subprocess
    import sys

    unfinished = tmp_path / "runs" / "20261130T000000Z-x-y-abcdef"
    unfinished.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "harness.claims", str(unfinished)], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 2 and "is not a finished run (no summary.json" in proc.stderr
    assert "Traceback" not in proc.stderr

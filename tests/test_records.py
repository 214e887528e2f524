"""Redaction of the resolved config and the run folder's write discipline."""

import json

import pytest

from harness.records.folder import REDACTED, RunFolder, redact, strip_credentials


def test_secret_values_are_redacted_and_ordinary_ones_kept():
    cfg = {
        "model": {
            "api_key_env": "DEEPSEEK_API_KEY", "api_key_optional": False, "api_key": "sk-live-1",
            "base_url": "https://user:pw@proxy.example:8443/v1?key=abc",
            "generation": {"max_tokens": 256, "extra_body": {"x-api-key": "k2", "access_token": "t3"}},
            "headers": [{"authorization": "Bearer t4"}],
            "pricing": {"input_per_mtok": 0.14},
        },
        "tracking": {"tracking_uri": "sqlite:///results/mlflow.db", "password": "p5"},
    }
    out = redact(cfg)
    m = out["model"]
    assert m["api_key_env"] == "DEEPSEEK_API_KEY" and m["api_key_optional"] is False
    assert m["generation"]["max_tokens"] == 256 and m["pricing"]["input_per_mtok"] == 0.14
    assert m["api_key"] == m["generation"]["extra_body"]["x-api-key"] == REDACTED
    assert m["generation"]["extra_body"]["access_token"] == m["headers"][0]["authorization"] == REDACTED
    assert out["tracking"]["password"] == REDACTED
    assert m["base_url"] == "https://proxy.example:8443/v1"
    assert "sk-live-1" not in json.dumps(out) and "pw@" not in json.dumps(out)


@pytest.mark.parametrize("url, stripped", [
    ("https://api.deepseek.com", "https://api.deepseek.com"),
    ("http://a:b@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("https://generativelanguage.googleapis.com/v1beta/openai/?key=AIza", "https://generativelanguage.googleapis.com/v1beta/openai/"),
])
def test_strip_credentials(url, stripped):
    assert strip_credentials(url) == stripped


def test_finished_run_folder_is_not_reused(tmp_path):
    folder = RunFolder(tmp_path, "r1")
    folder.write_summary({"run_id": "r1", "complete": True})
    assert json.loads((tmp_path / "runs" / "r1" / "summary.json").read_text()) == {"run_id": "r1", "complete": True}
    assert not list((tmp_path / "runs" / "r1").glob("*.tmp"))
    with pytest.raises(FileExistsError, match="already finished"):
        RunFolder(tmp_path, "r1")


def test_an_incomplete_run_resumes_in_place_with_its_previous_summary_kept(tmp_path):
    folder = RunFolder(tmp_path, "r2")
    (folder.path / "errors.jsonl").write_text('{"error": 1}\n')
    folder.write_summary({"run_id": "r2", "complete": False})
    again = RunFolder(tmp_path, "r2")
    assert again.path == folder.path and not (folder.path / "summary.json").exists()
    assert json.loads((folder.path / "summary.previous.json").read_text())["complete"] is False
    assert (folder.path / "errors.previous.jsonl").read_text() == '{"error": 1}\n'
    assert not (folder.path / "errors.jsonl").exists()

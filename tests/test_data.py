"""harness.data: pins, mirror, hashes and pull -- on folders the tests write in the hub's layout, and a
loopback server that answers as the Hugging Face hub does (the real hub is never contacted)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from harness.benchmarks import data
from harness.benchmarks.data import resolve_local_copy
from harness.benchmarks.pins import HashMismatchError, MirrorMissingError, combined_sha256, hash_folder, verify
from harness.config import ConfigError
from harness.data import main as data_main
from tests.conftest import write_gsm8k

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPO = "openai/gsm8k"
TEST_FILE = "main/test-00000-of-00001.parquet"
TRAIN_FILE = "main/train-00000-of-00001.parquet"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_copy(root: Path) -> Path:
    """root/openai/gsm8k in the hub's layout: README.md with configs, main/{train,test} parquet files."""
    return write_gsm8k(root, test=[("What is 2 + 3?", "2 + 3 = <<2+3=5>>5\n#### 5")],
                       train=[("What is 4 * 2?", "4 * 2 = <<4*2=8>>8\n#### 8"),
                              ("What is 9 - 1?", "9 - 1 = <<9-1=8>>8\n#### 8")])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path) -> Path:
    root = tmp_path / "mirror"
    write_hub_copy(root)
    return root


@pytest.fixture
def copy(mirror) -> Path:
    return mirror / REPO


def flip_byte(path: Path, offset: int = 20) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


# --- hashes ------------------------------------------------------------------------------------


def test_hash_folder_hashes_every_data_file_and_skips_hidden_ones(copy):
    (copy / ".gitattributes").write_text("*.parquet filter=lfs\n")
    (copy / ".cache" / "huggingface").mkdir(parents=True)
    (copy / ".cache" / "huggingface" / "x.metadata").write_text("x")
    (copy / "main" / ".hidden").write_text("x")
    (copy / data.PIN_FILE).write_text("{}")

    hashes = hash_folder(copy)

    assert hashes == {"README.md": sha(copy / "README.md"), TEST_FILE: sha(copy / TEST_FILE),
                      TRAIN_FILE: sha(copy / TRAIN_FILE)}
    assert list(hashes) == sorted(hashes)


def test_combined_hash_is_independent_of_location_and_enumeration_order(copy, tmp_path):
    elsewhere = shutil.copytree(copy, tmp_path / "somewhere" / "else" / "renamed")
    here, there = hash_folder(copy), hash_folder(elsewhere)
    assert here == there
    assert combined_sha256(here) == combined_sha256(dict(reversed(list(there.items()))))
    # It is sha256sum's output, hashed: the module docstring's shell line computes the same value.
    lines = "".join(f"{there[p]}  {p}\n" for p in sorted(there))
    assert combined_sha256(there) == hashlib.sha256(lines.encode()).hexdigest()
    # ... and it changes with any file's content or name.
    assert combined_sha256({**here, TEST_FILE: "0" * 64}) != combined_sha256(here)
    renamed = {("main/test-renamed.parquet" if p == TEST_FILE else p): h for p, h in here.items()}
    assert combined_sha256(renamed) != combined_sha256(here)


@pytest.mark.skipif(shutil.which("sha256sum") is None or shutil.which("find") is None, reason="GNU coreutils")
def test_combined_hash_matches_the_documented_shell_pipeline(copy):
    (copy / ".gitattributes").write_text("x\n")
    out = subprocess.run(
        "find -L . -type f ! -path '*/.*' | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True, cwd=copy, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == combined_sha256(hash_folder(copy))


# --- verification ------------------------------------------------------------------------------


def test_verify_passes_with_the_pinned_hashes(copy):
    pins = {"README.md": sha(copy / "README.md"), TEST_FILE: sha(copy / TEST_FILE), TRAIN_FILE: sha(copy / TRAIN_FILE)}

    record = verify(copy, pins, False, repo=REPO, revision=COMMIT, config="main", source="mirror")

    assert (record.repo, record.revision, record.config, record.source) == (REPO, COMMIT, "main", "mirror")
    assert record.local_path == str(copy.resolve())
    assert record.files == pins and record.files_sha256 == combined_sha256(pins)
    assert record.pinned and not record.mismatch and record.differing == ()
    summary = json.loads(json.dumps(record.to_dict()))
    assert summary["files"] == pins and summary["files_sha256"] == combined_sha256(pins)
    assert summary["mismatch"] is False and summary["repo"] == REPO and summary["revision"] == COMMIT
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.mismatch = True  # type: ignore[misc]


def test_verify_without_pins_records_the_hashes_unpinned(copy):
    record = verify(copy, None, False, repo=REPO)
    assert not record.pinned and not record.mismatch and record.files == hash_folder(copy)
    assert verify(copy, {}, False).pinned is False


def test_a_tampered_file_is_refused_naming_it(copy):
    pins = hash_folder(copy)
    flip_byte(copy / TEST_FILE)

    with pytest.raises(HashMismatchError) as info:
        verify(copy, pins, False, repo=REPO, task="gsm8k")

    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert TEST_FILE in message and pins[TEST_FILE][:12] in message
    assert "README.md" not in message and TRAIN_FILE not in message  # only what differs is listed
    assert "data.allow_hash_mismatch=true" in message
    assert f"python -m harness.data hash {copy.resolve()}" in message


def test_missing_and_extra_files_are_reported(copy):
    pins = hash_folder(copy)
    (copy / TRAIN_FILE).unlink()
    (copy / "main" / "extra-00000-of-00001.parquet").write_bytes(b"not pinned")

    with pytest.raises(HashMismatchError) as info:
        verify(copy, pins, False, repo=REPO)
    assert TRAIN_FILE in str(info.value) and "main/extra-00000-of-00001.parquet" in str(info.value)

    record = verify(copy, pins, True, repo=REPO)
    assert record.missing == (TRAIN_FILE,)
    assert record.extra == ("main/extra-00000-of-00001.parquet",)
    assert record.changed == ()
    assert record.mismatch


def test_allow_mismatch_returns_the_record_marked(copy):
    pins = hash_folder(copy)
    flip_byte(copy / TEST_FILE)

    record = verify(copy, pins, True, repo=REPO, revision=COMMIT)

    assert record.mismatch and record.changed == (TEST_FILE,) and record.differing == (TEST_FILE,)
    assert record.files[TEST_FILE] == sha(copy / TEST_FILE) != pins[TEST_FILE]
    assert record.to_dict()["differing"] == {"changed": [TEST_FILE], "missing": [], "extra": []}


# --- where the folder is -----------------------------------------------------------------------


def test_resolve_local_copy_reads_the_environment_and_the_config_wins(tmp_path, monkeypatch):
    env_root, cfg_root = tmp_path / "env-mirror", tmp_path / "cfg-mirror"
    write_hub_copy(env_root)
    write_hub_copy(cfg_root)

    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    assert resolve_local_copy(REPO, None) is None  # no mirror: the hub
    monkeypatch.setenv(data.MIRROR_ENV, str(env_root))
    assert resolve_local_copy(REPO, None) == (env_root / REPO).resolve()
    assert resolve_local_copy(REPO, "") == (env_root / REPO).resolve()
    assert resolve_local_copy(REPO, str(cfg_root)) == (cfg_root / REPO).resolve()


def test_a_mirror_without_the_dataset_names_the_path_and_the_pull_command(tmp_path, monkeypatch):
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    empty = tmp_path / "empty-mirror"
    empty.mkdir()

    with pytest.raises(MirrorMissingError) as info:
        resolve_local_copy(REPO, str(empty), task="gsm8k")

    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert str(empty.resolve() / REPO) in message
    assert "python -m harness.data pull task=gsm8k data.mirror=" in message
    assert "data.mirror=" + str(empty) in message  # says which setting pointed there

    monkeypatch.setenv(data.MIRROR_ENV, str(empty))
    with pytest.raises(MirrorMissingError, match=data.MIRROR_ENV):
        resolve_local_copy(REPO, None)


@pytest.mark.parametrize("bad", ["../etc", "/abs/path", "a/../../b", "a/b/c", ""])
def test_repo_ids_cannot_escape_the_mirror(tmp_path, bad):
    with pytest.raises(data.DataError):
        resolve_local_copy(bad, str(tmp_path))


def test_prepare_dataset_prefers_the_path_then_the_mirror_and_never_the_hub_when_a_mirror_is_set(
        tmp_path, monkeypatch):
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(data, "hub_snapshot", no_hub)
    explicit = write_hub_copy(tmp_path / "explicit")
    mirror = tmp_path / "mirror"
    write_hub_copy(mirror)
    flip_byte(mirror / REPO / TEST_FILE)  # the two copies differ, so the hashes tell which one was read

    from_path = data.prepare_dataset(repo=REPO, dataset_path=str(explicit), mirror=str(mirror))
    from_mirror = data.prepare_dataset(repo=REPO, mirror=str(mirror), expected=hash_folder(mirror / REPO))

    assert (from_path.source, from_path.files) == ("path", hash_folder(explicit))
    assert (from_mirror.source, from_mirror.files) == ("mirror", hash_folder(mirror / REPO))
    assert from_mirror.pinned and not from_mirror.mismatch
    with pytest.raises(MirrorMissingError):
        data.prepare_dataset(repo="TIGER-Lab/MMLU-Pro", mirror=str(mirror))


def test_a_mirror_pulled_at_another_revision_is_refused_when_no_hashes_settle_it(copy, caplog):
    (copy / data.PIN_FILE).write_text(json.dumps({"revision": "f" * 40}))
    with pytest.raises(HashMismatchError, match="pulled at revision f{40}"):
        data.prepare_dataset(repo=REPO, revision=COMMIT, dataset_path=str(copy))
    # With pinned hashes that match, the hashes decide and the pin file only earns a warning.
    record = data.prepare_dataset(repo=REPO, revision=COMMIT, dataset_path=str(copy), expected=hash_folder(copy))
    assert record.resolved_revision == "f" * 40 and not record.mismatch
    assert "pulled at revision" in caplog.text


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_hash_prints_yaml_that_round_trips(copy, capsys):
    (copy / ".gitattributes").write_text("x\n")

    assert data_main(["hash", str(copy)]) == 0

    out = capsys.readouterr().out
    parsed = yaml.safe_load(out)
    assert parsed == {"dataset_sha256": hash_folder(copy)}
    assert f"combined sha256 {combined_sha256(hash_folder(copy))}" in out.splitlines()[0]


def test_cli_hash_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert data_main(["hash", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a folder" in err


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HARNESS_DATA"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "harness.data", *args], cwd=PROJECT_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pull_from_an_unreachable_hub_fails_fast_with_one_clear_line(tmp_path):
    started = time.monotonic()
    result = run_cli("pull", "task=mmlu_pro", f"data.mirror={tmp_path / 'm'}",
                     env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf")})
    elapsed = time.monotonic() - started

    assert result.returncode == 2, result.stderr
    assert elapsed < 30
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TIGER-Lab/MMLU-Pro" in lines[0] and "revision 3373e0b32277875b8db2aa555a333b78a08477ea" in lines[0] and "unreachable" in lines[0]
    assert not (tmp_path / "m" / "TIGER-Lab" / "MMLU-Pro").exists() or not any((tmp_path / "m").rglob("*.parquet"))


def test_pull_in_offline_mode_says_so(tmp_path):
    result = run_cli("pull", "task=gsm8k", f"data.mirror={tmp_path / 'm'}",
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and REPO in line and "unreachable" in line and "HF_HUB_OFFLINE=1" in line


class FakeHub(ThreadingHTTPServer):
    """Answers the hub API calls snapshot_download makes, for one dataset repo at one commit."""

    daemon_threads = True

    def __init__(self, folder: Path, repo: str, commit: str):
        self.folder, self.repo, self.commit = folder, repo, commit
        self.paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _FakeHubHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, head: bool):
        hub, path = self.server, unquote(urlparse(self.path).path)
        hub.requests.append(f"{self.command} {path}")
        api = f"/api/datasets/{hub.repo}"
        if path in (api, f"{api}/revision/main", f"{api}/revision/{hub.commit}"):
            info = {"id": hub.repo, "sha": hub.commit, "private": False,
                    "siblings": [{"rfilename": p} for p in hub.paths]}
            return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
        if path.startswith(f"{api}/revision/"):
            return self._send(404, b'{"error": "Revision not found"}', {"X-Error-Code": "RevisionNotFound"}, head)
        if path == f"{api}/tree/{hub.commit}":
            tree = [{"type": "file", "path": p, "size": (hub.folder / p).stat().st_size,
                     "oid": hashlib.sha1((hub.folder / p).read_bytes()).hexdigest()} for p in hub.paths]
            return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
        prefix = f"/datasets/{hub.repo}/resolve/{hub.commit}/"
        if path.startswith(prefix) and path[len(prefix):] in hub.paths:
            body = (hub.folder / path[len(prefix):]).read_bytes()
            return self._send(200, body, {"X-Repo-Commit": hub.commit,
                                          "ETag": f'"{hashlib.sha1(body).hexdigest()}"'}, head)
        return self._send(404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, head)

    def do_GET(self):
        self._route(head=False)

    def do_HEAD(self):
        self._route(head=True)


@pytest.fixture
def fake_hub(tmp_path):
    published = write_hub_copy(tmp_path / "published")
    (published / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    hub = FakeHub(published, REPO, COMMIT)
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


# The gsm8k task pins the real hub's commit and files; the fake hub publishes others.
UNPINNED = ("task.dataset_revision=null", "task.dataset_sha256=null")


def test_pull_downloads_the_repo_into_the_mirror_pins_it_and_verifies_there(fake_hub, tmp_path, monkeypatch):
    mirror = tmp_path / "pulled"
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf")}

    result = run_cli("pull", "task=gsm8k", f"data.mirror={mirror}", *UNPINNED, env=env)

    assert result.returncode == 0, result.stderr
    expected = hash_folder(fake_hub.folder)
    folder = mirror / REPO
    assert hash_folder(folder) == expected
    assert (folder / TEST_FILE).read_bytes() == (fake_hub.folder / TEST_FILE).read_bytes()
    pin = json.loads((folder / data.PIN_FILE).read_text())
    assert pin["repo"] == REPO and pin["revision"] == COMMIT and pin["requested_revision"] is None
    assert pin["files"] == expected and pin["files_sha256"] == combined_sha256(expected)
    assert f"GET /datasets/{REPO}/resolve/{COMMIT}/{TEST_FILE}" in fake_hub.requests  # pinned to the commit
    printed = yaml.safe_load(result.stdout)  # stdout is paste-ready YAML; notes are comments
    assert printed == {"dataset_repo": REPO, "dataset_revision": COMMIT, "dataset_sha256": expected}
    assert f"data.mirror={mirror}" in result.stdout

    # The second machine: no hub, the mirror and the task's pins.
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    record = verify(resolve_local_copy(REPO, None), printed["dataset_sha256"], False, repo=REPO, revision=COMMIT)
    assert not record.mismatch and record.resolved_revision == COMMIT


def test_pull_refuses_files_the_task_pins_differently(fake_hub, tmp_path):
    wrong = {**hash_folder(fake_hub.folder), TEST_FILE: "0" * 64}
    pins = "{" + ", ".join(f"{p}: '{h}'" for p, h in wrong.items()) + "}"  # Hydra: keys unquoted
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf")}

    result = run_cli("pull", "task=gsm8k", f"data.mirror={tmp_path / 'm'}", f"task.dataset_sha256={pins}",
                     f"task.dataset_revision={COMMIT}", env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and TEST_FILE in result.stderr and "dataset_sha256" in result.stderr


def test_pull_refuses_a_mirror_folder_holding_files_the_repo_does_not_have(fake_hub, tmp_path):
    mirror = tmp_path / "m"
    stale = mirror / REPO / "main" / "test-00001-of-00002.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from another revision")
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf")}

    result = run_cli("pull", "task=gsm8k", f"data.mirror={mirror}", *UNPINNED, env=env)

    assert result.returncode == 2 and "main/test-00001-of-00002.parquet" in result.stderr
    assert "Traceback" not in result.stderr


def test_pull_into_an_existing_mirror_folder_still_fails_when_the_hub_is_unreachable(copy, tmp_path):
    """snapshot_download alone would hand back the existing folder when it cannot reach the hub."""
    result = run_cli("pull", "task=gsm8k", f"data.mirror={copy.parent.parent}",
                     env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2 and "unreachable" in result.stderr, result.stdout + result.stderr
    assert not (copy / data.PIN_FILE).exists()


def test_verify_without_a_local_copy_reads_a_hub_snapshot_at_the_resolved_commit(fake_hub, tmp_path):
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf")}
    result = run_cli("verify", "task=gsm8k", "task.dataset_path=null", *UNPINNED, env=env)
    assert result.returncode == 0, result.stderr
    assert "(hub)" in result.stdout and f"{REPO} at {COMMIT}" in result.stdout
    assert yaml.safe_load(result.stdout) == {"dataset_sha256": hash_folder(fake_hub.folder)}
    assert str(tmp_path / "hf") in result.stdout  # the snapshot lives in the Hugging Face cache


def test_revision_check_accepts_abbreviated_shas_and_cannot_judge_branch_names():
    assert data._same_revision(COMMIT[:7], COMMIT, None)
    assert not data._same_revision("f" * 7, COMMIT, None)
    assert data._same_revision("main", COMMIT, "main")
    assert data._same_revision("v1.0", COMMIT, None)


def test_pins_of_data_files_ignore_the_card_and_other_subsets_but_not_new_shards(copy):
    pins = {TEST_FILE: sha(copy / TEST_FILE), TRAIN_FILE: sha(copy / TRAIN_FILE)}  # no README.md pin
    (copy / "README.md").write_text((copy / "README.md").read_text() + "\nA longer dataset card.\n")
    (copy / "socratic").mkdir()
    (copy / "socratic" / "test-00000-of-00001.parquet").write_bytes(b"another subset")
    record = verify(copy, pins, False, repo=REPO)
    assert not record.mismatch and record.pinned
    (copy / "main" / "test-00001-of-00002.parquet").write_bytes(b"an injected shard")
    with pytest.raises(HashMismatchError, match="test-00001-of-00002"):
        verify(copy, pins, False, repo=REPO)

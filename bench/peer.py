"""The peer (PyTorch CPU) in its own process, driven round by round from the sweep.

Why a process of its own: cnncore and PyTorch share one OpenMP runtime (torch's bundled
``libgomp.so.1`` and ours have the same soname, so the loader maps one copy), and libgomp reads
``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when the first of them loads it.  Importing
cnncore throttles libgomp's spinning (``cnncore_kernels/_openmp.py``), which our BLAS-plus-OpenMP
kernels need; PyTorch's oneDNN then pays a wake-up after every parallel region.  On a quiet 2-core
machine that alone made its conv2d forward 25-50% slower ((8,64,56,56) k3: 118-141 GFLOP/s passive
against 220-290 with libgomp's default).  The peer's process sees torch as a PyTorch user does:
it sets ``GOMP_SPINCOUNT`` to libgomp's own default for an unset policy (300,000), so that
cnncore_kernels, which ``bench`` imports for the workloads, leaves libgomp alone there (a user's
setting turns cnncore's throttle off); the sweep still alternates the two sides round by round
(``bench.rounds``).  ``--peer-process shared`` runs PyTorch in our process, under our throttle, for
comparison.

Protocol: the parent writes pickled requests to the worker's stdin and reads pickled replies from
its stdout: ``("prepare", spec)`` builds a case (``bench.workloads.build_case``) and runs it once;
``("time", k)`` runs it ``k`` times and returns the seconds; ``("info",)`` returns the worker's
thread settings and import order; ``("quit",)``.  Errors come back as ``("error", text)``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from typing import Any

from cnncore_kernels._openmp import USER_SETTINGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class InProcess:
    """The peer in this process (shared OpenMP runtime and wait policy)."""

    mode = "shared"

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.case: Any = None

    def prepare(self, spec: dict[str, Any]) -> dict[str, Any]:
        from bench import workloads

        self.case = workloads.build_case(spec, "torch", self.torch)
        self.case.run()  # warm-up
        return dict(self.case.info or {})

    def time(self, k: int) -> float:
        run = self.case.run
        t0 = time.perf_counter()
        for _ in range(k):
            run()
        return time.perf_counter() - t0

    def info(self) -> dict[str, Any]:
        from bench import machine

        return {
            "mode": self.mode,
            **machine.thread_settings(),
            "import_order": machine.import_order(),
        }

    def close(self) -> None:
        self.case = None


# libgomp's spin count when OMP_WAIT_POLICY is unset ("3 msec blocking", env.c), said explicitly
DEFAULT_SPINCOUNT = "300000"


class PeerProcess:
    """The peer in a worker process that imports torch first, with ``policy`` as libgomp's wait
    policy (None: libgomp's default, spin a while then sleep)."""

    mode = "own"

    def __init__(self, threads: int, policy: str | None = None) -> None:
        env = dict(os.environ)
        for key in USER_SETTINGS:
            env.pop(key, None)
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        else:  # libgomp's default, and cnncore's throttle off (see the module's docstring)
            env["GOMP_SPINCOUNT"] = DEFAULT_SPINCOUNT
        self.policy = policy or "default"
        env["OMP_NUM_THREADS"] = str(threads)
        env["CNNCORE_BENCH_IMPORT_FIRST"] = "torch"  # bench/__init__ then loads torch first
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.peer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )

    def _ask(self, *request: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        pickle.dump(request, self.proc.stdin)
        self.proc.stdin.flush()
        try:
            status, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise RuntimeError(f"the peer process died (exit code {self.proc.poll()})") from None
        if status == "error":
            raise RuntimeError(f"peer process: {value}")
        return value

    def prepare(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._ask("prepare", spec)

    def time(self, k: int) -> float:
        return self._ask("time", k)

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, **self._ask("info")}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask("quit")
            except (RuntimeError, BrokenPipeError):
                pass
            self.proc.wait(timeout=30)


class BestOfPolicies:
    """Two peer processes, libgomp's default wait policy and the passive one: the sweep times both
    in its interleaved rounds and keeps, per case, the faster (PyTorch's best configuration on this
    machine at this moment).  Spinning threads win on a quiet machine and lose badly under load:
    measured on the shared 2-core machine at load 5, conv2d (64,64,15,15) k5 forward ran at 46
    GFLOP/s spinning against 146 passive; on a quiet machine (8,64,56,56) k3 ran at 281 spinning
    against 118 passive."""

    mode = "own, best of two wait policies"

    def __init__(self, threads: int) -> None:
        self.peers = {"default": PeerProcess(threads), "passive": PeerProcess(threads, "PASSIVE")}

    def prepare(self, spec: dict[str, Any]) -> dict[str, Any]:
        infos = [p.prepare(spec) for p in self.peers.values()]
        return infos[0]

    def runners(self, name: str) -> dict[str, Any]:
        return {f"{name}@{policy}": p for policy, p in self.peers.items()}

    def info(self) -> dict[str, Any]:
        info = self.peers["default"].info()
        info["mode"] = self.mode
        info["libgomp_wait_policy"] = "best of default and PASSIVE, per case"
        return info

    def close(self) -> None:
        for p in self.peers.values():
            p.close()


def runners(peer: Any, name: str) -> dict[str, Any]:
    """The runners of ``peer`` for the peer method ``name`` (two for ``BestOfPolicies``)."""
    return peer.runners(name) if isinstance(peer, BestOfPolicies) else {name: peer}


def merge_policies(timed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Collapse ``name@policy`` timings into ``name``: the policy with the lower median, the other
    kept as ``other_policy_median``."""
    out: dict[str, dict[str, Any]] = {}
    for key, t in timed.items():
        name, _, policy = key.partition("@")
        if not policy:
            out[name] = t
            continue
        t = {**t, "peer_wait_policy": policy}
        best = out.get(name)
        if best is None or t["median"] < best["median"]:
            if best is not None:
                t["other_policy_median"] = best["median"]
            out[name] = t
        else:
            best["other_policy_median"] = t["median"]
    return out


def open_peer(mode: str, threads: int) -> Any:
    """The peer for ``mode`` ("best": two processes, the faster wait policy per case; "own": its own
    process, libgomp's default policy; "shared": this process), or None without torch."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    if mode == "best":
        return BestOfPolicies(threads)
    if mode == "own":
        return PeerProcess(threads)
    if mode == "shared":
        import torch

        from bench import machine

        machine.set_torch_threads(torch)
        return InProcess(torch)
    raise ValueError(f"peer mode must be 'best', 'own' or 'shared', got {mode!r}")


def _serve() -> None:  # pragma: no cover - runs in the worker process (tested through PeerProcess)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the protocol
    inp = sys.stdin.buffer
    import torch  # first, as a PyTorch user's process

    from bench import machine

    machine.set_torch_threads(torch)
    peer = InProcess(torch)
    while True:
        try:
            request = pickle.load(inp)
        except EOFError:
            return
        try:
            if request[0] == "quit":
                reply: Any = ("ok", None)
            elif request[0] == "prepare":
                reply = ("ok", peer.prepare(request[1]))
            elif request[0] == "time":
                reply = ("ok", peer.time(request[1]))
            elif request[0] == "info":
                reply = ("ok", {k: v for k, v in peer.info().items() if k != "mode"})
            else:
                reply = ("error", f"unknown request {request[0]!r}")
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
            reply = ("error", f"{type(e).__name__}: {e}")
        pickle.dump(reply, out)
        out.flush()
        if request[0] == "quit":
            return


if __name__ == "__main__":
    _serve()

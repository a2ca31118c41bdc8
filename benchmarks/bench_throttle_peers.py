"""bench_throttle with b24pysdk as a third client (the same runs, figures and options).

    python -m benchmarks.bench_throttle_peers              # ours, fast-bitrix24, b24pysdk; K = 5
    python -m benchmarks.bench_throttle_peers --scale 1    # the real 2/s bucket

Everything is ``benchmarks/bench_throttle.py``'s (see its docstring for what each figure
means); this module only registers one more runner. b24pysdk is driven as a user would:
``client.call_batches([client.crm.lead.add(fields=...), ...]).result`` with its defaults
(sync and sequential, no client-side throttle, 503 retried up to 3 attempts after 1 s and
2 s), its hard-coded https patched to http the documented way. Being sync, it cannot be
stopped by the per-client ``anyio.fail_after``; bench_throttle's global watchdog still holds.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from collections.abc import Sequence

from benchmarks import bench_throttle
from benchmarks.bench_throttle import ClientRun, lead_fields


def run_b24pysdk(url: str, args: argparse.Namespace, limit: float) -> tuple[ClientRun, str]:
    """b24pysdk: one ``call_batches`` of every add, with the SDK's own retry defaults."""
    import b24pysdk

    caller = importlib.import_module("b24pysdk.api.callers.call_method")
    caller._MethodCaller._base_url = property(lambda self: f"http://{self._domain}/rest")
    base, _, token = url.removeprefix("http://").partition("/rest/")
    client = b24pysdk.Client(b24pysdk.BitrixWebhook(domain=base, webhook_token=token.strip("/")))
    settings = "Client(BitrixWebhook).call_batches(...) defaults: sequential, 503 retried 3x"
    fields = [lead_fields("b24pysdk", i) for i in range(args.commands)]
    run = ClientRun()
    began = time.perf_counter()
    try:
        answer = client.call_batches([client.crm.lead.add(fields=f) for f in fields]).result
        result = answer.result
        run.ok = len(result) if isinstance(result, dict | list) else 0
        if answer.result_error:
            run.not_ok = {"error": len(answer.result_error)}
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        run.wall_s = time.perf_counter() - began
    return run, settings


def main(argv: Sequence[str] | None = None) -> int:
    bench_throttle.RUNNERS["b24pysdk"] = run_b24pysdk
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--clients" or a.startswith("--clients=") for a in args):
        clients = [*bench_throttle.CLIENTS, "b24pysdk"]
        if importlib.util.find_spec("b24pysdk") is None:
            print("b24pysdk is not installed: skipping it (pip install b24pysdk)")
            clients.remove("b24pysdk")
        args += ["--clients", ",".join(clients)]
    return bench_throttle.main(args)


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every benchmark in turn (BENCH_ONLY=api,jobs picks some)."""

import asyncio
import importlib
import os

BENCHES = ("api", "jobs")

for name in os.environ.get("BENCH_ONLY", ",".join(BENCHES)).split(","):
    print(f"\n### bench.{name}", flush=True)
    asyncio.run(importlib.import_module(f"bench.{name}").main())

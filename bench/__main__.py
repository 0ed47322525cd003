"""`make bench`: every benchmark in turn."""

import asyncio
import importlib
import pkgutil

import bench

for module in pkgutil.iter_modules(bench.__path__):
    if module.name.startswith("_"):
        continue
    print(f"\n### bench.{module.name}")
    loaded = importlib.import_module(f"bench.{module.name}")
    asyncio.run(loaded.main())

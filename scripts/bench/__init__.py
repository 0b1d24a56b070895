"""Benchmarks of agent-shield, one module per tool; scripts/bench_proxy.py and
scripts/bench_queries.py are their entry points.

  cli         bench_proxy's flags: the proxy against bare mitmproxy, then the tools below
  proxy       rounds of bare / shield / shield-500 under load, calibration, cost drift (soak)
  summary     medians, shield/bare ratios and the targets, printed
  runs        one measured run: a proxy process, its CPU, threads and memory, an fsync probe
  load        the load generator (asyncio, keep-alive) and nginx, the upstream
  micro       in-process figures of the real pipeline functions (through pipeline.py)
  journalbench  journal commits and DuckDB ingest
  profile     py-spy sampling of bare and shield, by hook and thread
  procstat    process and machine CPU and memory, via psutil
  stats       pure arithmetic: medians, quantiles, ratios per round
  queries     the audit store's query benchmark (querydata.py makes its synthetic events)
"""

"""Developer tools of the checkout: the shared process harness (harness.py), benchmarks
(bench/) and reliability runs (reliability/). Not shipped: shield_addon never imports them.

The files beside this one (start, test, venv, bench_proxy.py, ...) are the entry points;
run them from anywhere, or the modules with `python -m scripts.bench.proxy` at the root."""

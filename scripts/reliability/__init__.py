"""Reliability runs against a real proxy: crash_loop (kill -9 at random moments, then check the
trail) and soak (full speed for minutes, watched); common holds their shared parts.
Entry points: scripts/crash_loop.py and scripts/soak.py."""

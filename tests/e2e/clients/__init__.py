"""Real clients for tests/e2e/test_clients.py: the scripts here run in subprocesses whose only
proxy and CA settings are the exports `shield env` prints, as an agent's would be."""

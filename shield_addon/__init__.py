"""agent-shield: an in-line guard and audit trail for AI agents, as mitmproxy addons."""

__version__ = "0.1.0"

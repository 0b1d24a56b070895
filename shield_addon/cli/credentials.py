"""`shield agents`, `shield env` and `shield ca`: per-agent proxy credentials and what an agent needs to trust."""

from __future__ import annotations

import argparse
import sys

from shield_addon import agents
from shield_addon.cli.parser import EXIT_OK, UsageError, confdir_of


def cmd_agents(args: argparse.Namespace) -> int:
    confdir = confdir_of(args)
    if args.agents_cmd in ("add", "rotate"):
        token = (agents.add if args.agents_cmd == "add" else agents.rotate)(confdir, args.name)
        print(f"agent {args.name!r} {'added' if args.agents_cmd == 'add' else 'has a new token'}; its token (shown once):\n{token}")
        print(f"\nexport lines: shield env {args.name} --token={token}", file=sys.stderr)
    elif args.agents_cmd == "remove":
        agents.remove(confdir, args.name)
        print(f"agent {args.name!r} removed")
    else:
        for name in agents.list_agents(confdir):
            print(name)
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    confdir = confdir_of(args)
    if args.name not in agents.list_agents(confdir):
        raise UsageError(f"no agent {args.name!r}; add it with: shield agents add {args.name}")
    pairs = agents.env_vars(args.name, args.token or "TOKEN", args.host, args.port,
                            confdir / "mitmproxy-ca-cert.pem", args.no_proxy or "")
    print("\n".join(agents.env_lines(pairs, args.shell)))
    if not args.token:
        print("# replace TOKEN with the agent's token (printed once by `shield agents add`)", file=sys.stderr)
    return EXIT_OK




def cmd_ca(args: argparse.Namespace) -> int:
    from mitmproxy import certs

    confdir = confdir_of(args)
    # The same files mitmproxy would create at its first start, so the agent can be set up first.
    certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    cert = confdir / "mitmproxy-ca-cert.pem"
    print(cert.read_text().strip() if args.pem else cert)
    return EXIT_OK

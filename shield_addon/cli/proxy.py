"""`shield run` and `shield demo`: mitmproxy's own tools, started with the shield addon script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shield_addon import agents, paths
from shield_addon.cli.parser import EXIT_USAGE


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from mitmproxy.tools import main as mitm

    argv = ["-s", str(paths.ADDON)]
    if args.listen_port is not None:
        argv += ["--listen-port", str(args.listen_port)]
    if args.confdir:
        argv += ["--set", f"confdir={args.confdir}"]
    if args.reviewer:
        argv += ["--set", f"shield_reviewer={args.reviewer}"]
    given = paths.confdir_option(extra) or args.confdir  # `--set confdir=X` works as well as --confdir X
    confdir = Path(given).expanduser() if given else paths.default_confdir()
    # Before mitmproxy: it reads config.yaml from the confdir and writes its CA there, and
    # a bad confdir would end in a traceback (issue #8).
    if problem := paths.check_confdir(confdir):
        print(f"shield: {problem}", file=sys.stderr)
        return EXIT_USAGE
    htpasswd = agents.htpasswd_path(confdir)
    if htpasswd.exists() and agents.list_agents(confdir) and not any(a.startswith("proxyauth") for a in extra):
        argv += ["--set", f"proxyauth=@{htpasswd}"]
    argv += extra
    tool = mitm.mitmdump if args.headless else mitm.mitmweb if args.web else mitm.mitmproxy
    return tool(argv) or 0


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from mitmproxy.tools import main as mitm

    work = Path(args.dir).expanduser()
    argv = ["-s", str(paths.ADDON), "-s", str(paths.DEMO), "--listen-host", "127.0.0.1", "--listen-port", str(args.port),
            "--set", f"confdir={work / 'conf'}", "--set", f"shield_dir={work / 'audit'}", "--set", "proxyauth=any",
            "--set", "console_focus_follow=true"]
    if args.auto:
        argv += ["--set", "shield_demo_auto=true", "--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]
    print(f"agent-shield demo: a scripted agent against a fake production API; the trail goes to {work / 'audit'}",
          file=sys.stderr)
    rc = (mitm.mitmdump if args.auto else mitm.mitmproxy)([*argv, *extra]) or 0
    args.dir, args.follow, args.limit = str(work / "audit"), False, None
    print()
    from shield_addon.cli.timeline import cmd_timeline

    cmd_timeline(args)
    print(f"\nNext: shield show FLOW_ID --dir {work / 'audit'}   |   shield verify --dir {work / 'audit'} "
          f"--confdir {work / 'conf'}", file=sys.stderr)
    return rc

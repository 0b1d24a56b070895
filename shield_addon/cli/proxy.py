"""`shield run` and `shield demo`: mitmproxy's own tools, started with the shield addon script."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shield_addon import agents, paths
from shield_addon.cli.parser import EXIT_USAGE


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from mitmproxy.tools import main as mitm

    # mitm.it is answered by mitmproxy's onboarding app before any rule runs: the agent would get
    # a page the trail says it never got. The CA comes from `shield ca` / `shield env` instead.
    # Lazy: a CONNECT contacts nothing; a server is reached only once a request to it was allowed.
    argv = ["-s", str(paths.ADDON), "--set", "onboarding=false", "--set", "connection_strategy=lazy"]
    if args.listen_port is not None:
        argv += ["--listen-port", str(args.listen_port)]
    if args.confdir:
        argv += ["--set", f"confdir={args.confdir}"]
    if args.reviewer:
        argv += ["--set", f"shield_reviewer={args.reviewer}"]
    extra = with_profile(extra, getattr(args, "profile", None))
    given = paths.confdir_option(extra) or args.confdir  # `--set confdir=X` works as well as --confdir X
    confdir = Path(given).expanduser() if given else paths.default_confdir()
    # Before mitmproxy: it reads config.yaml from the confdir and writes its CA there, and
    # a bad confdir would end in a traceback (issue #8).
    if problem := paths.check_confdir(confdir) or rules_problem(extra):
        print(f"shield: {problem}", file=sys.stderr)
        return EXIT_USAGE
    htpasswd = agents.htpasswd_path(confdir)
    authenticated = paths.set_option(extra, "proxyauth") is not None
    if not authenticated and htpasswd.exists() and agents.list_agents(confdir):
        argv += ["--set", f"proxyauth=@{htpasswd}"]
        authenticated = True
    argv += listen_defaults(paths.listen_host_option(extra), authenticated)
    argv += extra
    tool = mitm.mitmdump if args.headless else mitm.mitmweb if args.web else mitm.mitmproxy
    return tool(argv) or 0


def cmd_review(args: argparse.Namespace, extra: list[str]) -> int:
    from mitmproxy.tools import main as mitm

    if not args.fleet:
        print("shield: review needs the fleet's URL: --fleet postgresql://... or SHIELD_FLEET", file=sys.stderr)
        return EXIT_USAGE
    # No proxy server: this console holds nothing, it only decides the fleet's holds. The URL
    # goes by the environment: a password in it must not show in `ps`.
    os.environ["SHIELD_FLEET"] = args.fleet
    argv = ["-s", str(paths.REVIEW_CONSOLE), "--set", "server=false"]
    if args.confdir:
        argv += ["--set", f"confdir={args.confdir}"]
    if args.reviewer:
        argv += ["--set", f"shield_reviewer={args.reviewer}"]
    return (mitm.mitmdump if args.headless else mitm.mitmproxy)([*argv, *extra]) or 0


def with_profile(extra: list[str], profile: str | None) -> list[str]:
    """mitmproxy's arguments with the profile's rules loaded after the rule set in force (the
    bundled packs, or `--set shield_rules=X`). mitmproxy keeps neither of two `--set` of one
    addon option, so the given one is replaced, not repeated."""
    if not profile:
        return extra
    base = paths.set_option(extra, "shield_rules") or str(paths.bundled_rules())
    return [*without_option(extra, "shield_rules"), "--set", f"shield_rules={base}{os.pathsep}{paths.profile_dir(profile)}"]


def without_option(args: list[str], name: str) -> list[str]:
    """`args` without any `--set NAME=X` / `--set=NAME=X`."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--set" and i + 1 < len(args) and args[i + 1].startswith(name + "="):
            skip = True
            continue
        if arg.startswith(f"--set={name}="):
            continue
        out.append(arg)
    return out


def rules_problem(extra: list[str]) -> str | None:
    """A rule set that cannot load, as one line naming file:line:column: checked before
    mitmproxy starts, so nothing listens and no traceback is printed."""
    from shield_addon import rules

    try:
        rules.load_path(paths.set_option(extra, "shield_rules") or str(paths.bundled_rules()))
    except rules.RuleError as e:
        return " ".join(str(e).split())
    return None


def listen_defaults(listen_host: str | None, authenticated: bool) -> list[str]:
    """Without agent credentials anyone who reaches the port could use the proxy as a relay into
    production: listen on loopback unless told otherwise, and warn when told otherwise."""
    if authenticated:
        return []
    if listen_host is None:
        return ["--listen-host", "127.0.0.1"]
    if listen_host not in ("127.0.0.1", "::1", "localhost"):
        print(f"shield: warning: listening on {listen_host or 'every interface'} without agent credentials: "
              "anyone who reaches this port can use the proxy (add agents with `shield agents add NAME`)",
              file=sys.stderr)
    return []


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

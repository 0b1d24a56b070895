"""Where bundled files live, in a checkout and in an installed wheel alike; and whether
the proxy can start on a confdir."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ADDON = PACKAGE / "addon.py"
DEMO = PACKAGE / "demo.py"
REVIEW_CONSOLE = PACKAGE / "review_console.py"

# Created in the confdir on the first start when missing: mitmproxy's CA, the addon's
# redaction key (addon.redaction_key) and checkpoint signing key (checkpoints.KEY_FILE).
CONFDIR_CREATED = ("mitmproxy-ca.pem", "shield-redaction.key", "shield-signing.key")
# Read at start when present (mitmproxy reads config.yaml/.yml before any addon runs).
CONFDIR_READ = (*CONFDIR_CREATED, "config.yaml", "config.yml", "shield-agents.htpasswd")


def bundled_rules() -> Path:
    # In a wheel the rules are packaged as shield_addon/bundled_rules; in a checkout
    # (editable install) they are the repository's rules/ folder.
    packaged = PACKAGE / "bundled_rules"
    return packaged if packaged.is_dir() else PACKAGE.parent / "rules"


def profile_dir(name: str) -> Path:
    """A rule profile shipped with the packs (`shield run --profile NAME`), e.g. strict."""
    return bundled_rules() / "profiles" / name


def default_confdir() -> Path:
    return Path("~/.mitmproxy").expanduser()


def set_option(mitmproxy_args: Sequence[str], name: str) -> str | None:
    """The value of the last `--set NAME=X` (or `--set=NAME=X`) among mitmproxy arguments."""
    found = None
    for i, arg in enumerate(mitmproxy_args):
        if arg == "--set" and i + 1 < len(mitmproxy_args):
            spec = mitmproxy_args[i + 1]
        elif arg.startswith("--set="):
            spec = arg.removeprefix("--set=")
        else:
            continue
        if spec.startswith(name + "="):
            found = spec.removeprefix(name + "=")
    return found


def confdir_option(mitmproxy_args: Sequence[str]) -> str | None:
    return set_option(mitmproxy_args, "confdir")


def listen_host_option(mitmproxy_args: Sequence[str]) -> str | None:
    """The listen host among mitmproxy arguments, however it was given."""
    found = set_option(mitmproxy_args, "listen_host")
    for i, arg in enumerate(mitmproxy_args):
        if arg == "--listen-host" and i + 1 < len(mitmproxy_args):
            found = mitmproxy_args[i + 1]
        elif arg.startswith("--listen-host="):
            found = arg.removeprefix("--listen-host=")
    return found


def check_confdir(path: str | os.PathLike[str]) -> str | None:
    """Why the proxy cannot start on this confdir, as one line naming it; None if it can.

    A missing confdir is fine when it can be created (mitmproxy creates it, parents too).
    An existing one must be a directory the proxy can enter, its files present must be
    readable, and it must be writable while the CA or a shield key still has to be created
    in it. Permissions are judged for the real user, as the proxy will meet them."""
    p = Path(path).expanduser().absolute()
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        return _why_not_creatable(p)
    except OSError as e:  # a parent we may not enter, a symlink loop, ...
        return f"confdir {p}: cannot read it ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return f"confdir {p} is not a directory"
    if not os.access(p, os.X_OK):
        return f"confdir {p}: cannot read it (permission denied)"
    for name in CONFDIR_READ:
        if (p / name).exists() and not os.access(p / name, os.R_OK):
            return f"confdir {p}: cannot read {name} in it (permission denied)"
    missing = [name for name in CONFDIR_CREATED if not (p / name).exists()]
    if missing and not os.access(p, os.W_OK):
        return f"confdir {p}: cannot write it (permission denied), and {', '.join(missing)} must be created in it"
    return None


def _why_not_creatable(p: Path) -> str | None:
    for parent in p.parents:  # the nearest one that exists decides
        try:
            st = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            return f"confdir {p} does not exist and cannot be created: {parent}: {e.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return f"confdir {p} cannot be created: {parent} is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"confdir {p} does not exist and cannot be created: cannot write {parent} (permission denied)"
        return None
    return None

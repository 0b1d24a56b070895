"""The script `shield review --fleet` loads into mitmproxy's console: no proxy, no trail, the
fleet's pending holds as flows, decided with the same keys as on a proxy's own console."""

from __future__ import annotations

from shield_addon.addons.fleet import Fleet, FleetReviewer

fleet = Fleet()
addons = [fleet, FleetReviewer(fleet)]

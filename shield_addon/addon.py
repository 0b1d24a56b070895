"""The script mitmproxy loads (`shield run` passes it with -s): agent-shield's addons, composed
like mitmproxy's own defaults. Each owns one concern; shared state is passed explicitly.
"""

from __future__ import annotations

from shield_addon.addons.crashes import Crashes
from shield_addon.addons.fleet import Fleet
from shield_addon.addons.gate import Gate
from shield_addon.addons.heap import Heap
from shield_addon.addons.identity import Identity
from shield_addon.addons.notify import Notify
from shield_addon.addons.preview import Previews
from shield_addon.addons.review import Review
from shield_addon.addons.rulebook import Rulebook
from shield_addon.addons.trail import Trail
from shield_addon.addons.tunnel import Tunnel

# The rules load before the trail opens, so its first event names the rule set in force.
trail = Trail()
rulebook = Rulebook(trail)
fleet = Fleet(lambda: trail.link.chain_id if trail.link else "")
review = Review(trail, rulebook, fleet)
gate = Gate(trail, rulebook, review)
addons = [fleet, rulebook, trail, review, Previews(), Crashes(trail), gate, Tunnel(gate), Notify(review, gate), Identity(),
          Heap()]  # Heap last: it freezes what they loaded

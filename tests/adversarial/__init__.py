"""The red team's adversarial corpus: dangerous requests the bundled packs must stop and
benign lookalikes they must let through (see scripts/corpus.py)."""

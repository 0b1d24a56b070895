"""The audit writer in a process of its own.

The proxy sends each event as one JSON line through a socket pair; the writer process seals
them into the hash chain, appends them to the journal (fsync'd, group-committed), signs
checkpoints and ingests into audit.duckdb, and answers with a watermark: "the first N events
you sent are on disk". The event loop reads that watermark like any socket (no thread hands
it over), and one answer releases every request of the batch.

wire.py: the lines both ends exchange. process.py: the writer process. link.py: the proxy's end.
"""

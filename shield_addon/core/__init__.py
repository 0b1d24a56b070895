"""The pure core: vocabulary, decisions and small grammars. No mitmproxy, no DuckDB, no file I/O."""

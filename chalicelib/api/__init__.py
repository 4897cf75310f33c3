"""The HTTP API: thin Chalice routes over the lifecycle."""

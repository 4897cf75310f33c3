"""Status events: derived from the jobs table's change stream, published to EventBridge."""

"""Consumers of jobpipe's events: the ERP bridge and cache invalidation."""

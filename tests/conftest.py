"""Shared test helpers. The flow_run / flow_clock fixtures come from flowfn's own pytest plugin."""

"""The checks before anything is submitted: preflight and what it measures (space, quota, hub access and token, the compute nodes' network)."""

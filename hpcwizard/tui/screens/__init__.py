"""One module per screen, each with its CSS beside it."""

"""The paddock command-line front door."""

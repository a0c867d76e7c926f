"""End-to-end workflows built from the commands (the demo)."""

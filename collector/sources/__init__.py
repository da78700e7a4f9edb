"""hciwatch package."""

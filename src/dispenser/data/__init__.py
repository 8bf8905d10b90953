"""Small public-domain files the installed package needs (see README.md here)."""

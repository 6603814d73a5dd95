"""Gmail API provider (planned: the Gmail issue). Registers its kind in providers/kinds.py when it lands."""

"""Conversations: thread identity, the bookkeeping that settles it, and the views the API shows."""

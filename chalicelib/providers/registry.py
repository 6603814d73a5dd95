"""Registers the built-in providers with `base.register` (imported lazily by `base.create_provider`)."""
from chalicelib.providers.base import register


def _imap(context):
    from chalicelib.providers.imap.adapter import ImapProvider
    return ImapProvider(context)


register("imap", _imap)

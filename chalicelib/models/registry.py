"""The list of table models; `infra/resources.yaml` must define a table for each (a test checks)."""
from chalicelib.models.mailbox import Mailbox, MailboxShare, MailServer
from chalicelib.models.event import Event
from chalicelib.models.message import Message
from chalicelib.models.tenant import ApiKey, Tenant

MODELS: list[type] = [Tenant, ApiKey, MailServer, Mailbox, MailboxShare, Message, Event]

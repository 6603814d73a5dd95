"""The list of table models; `infra/resources.yaml` must define a table for each (a test checks)."""
from chalicelib.models.mailbox import Mailbox, MailboxShare, MailServer
from chalicelib.models.event import Event
from chalicelib.models.message import Message
from chalicelib.models.sync_cursor import SyncCursor
from chalicelib.models.tenant import ApiKey, RootKey, Tenant
from chalicelib.models.directory import DirectoryIndex, DirectoryRecord
from chalicelib.models.pairing import AuditEntry, MessageLink, Rule, Signal
from chalicelib.models.webhook import Webhook, WebhookDelivery
from chalicelib.models.notification import Notification, NotificationRelay, NotificationSettings
from chalicelib.models.consent import ConsentState
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.privacy import ErasureJob, PrivacyList, RetiredMailbox
from chalicelib.models.conversation import ThreadEntry, ThreadKey
from chalicelib.models.search import SearchPosting

MODELS: list[type] = [Tenant, RootKey, ApiKey, MailServer, Mailbox, MailboxShare, SyncCursor, Message, Event]
MODELS += [DirectoryRecord, DirectoryIndex, MessageLink, Signal, Rule, AuditEntry]
MODELS += [Webhook, WebhookDelivery]
MODELS += [NotificationSettings, Notification, NotificationRelay]
MODELS += [ConsentState]
MODELS += [OutboxItem]
MODELS += [PrivacyList, ErasureJob, RetiredMailbox]
MODELS += [ThreadKey, ThreadEntry, SearchPosting]


def all_models() -> list[type]:
    """Every table model of the service (the infra template must define each of them)."""
    return list(MODELS)

"""Response models for manual refresh and sync status."""

from pydantic import Field

from chalicelib.api.schemas.common import ApiModel


class RefreshQueued(ApiModel):
    queued: bool
    coalesced: bool = False


class SyncError(ApiModel):
    code: str
    detail: str
    at: str


class SyncCounts(ApiModel):
    imported: int = Field(description="messages stored (each counted once, when its item is created)")
    skipped: int = Field(description="messages over the size limit (recorded without their body) or named by a "
                                     "never-import list (not stored)")
    removed: int = Field(description="stored messages marked removed at the source now; one that comes back "
                                     "(untrashed, moved back, re-listed) is no longer counted")


class FolderCursor(ApiModel):
    """A folder's sync position: the cursor itself is opaque provider state and is not shown."""
    folder: str
    has_cursor: bool
    updated_at: str | None
    age_seconds: int | None


class SyncStatus(ApiModel):
    mailbox_id: str
    status: str
    stage: str
    last_sync_started_at: str | None
    last_success_at: str | None = Field(None, description=(
        "the last sync that recorded success. A scheduled check that finds nothing new writes nothing, so for "
        "an idle mailbox this is refreshed every `idle_heartbeat_seconds` (plus up to one 30-minute tick); a "
        "failing check is recorded at once in `last_error`"))
    idle_heartbeat_seconds: int = Field(0, description="how often an idle, healthy mailbox records success "
                                                       "(0: every sync does)")
    last_error: SyncError | None
    counts: SyncCounts
    cursors: list[FolderCursor]
    push_expires_at: str | None
    push_error: SyncError | None = Field(None, description="the last failed push registration/renewal")
    throttled_until: str | None = Field(None, description="the provider rate-limited this mailbox; the next "
                                                          "sync runs after this time (stage `throttled`)")
    lease_held: bool
    follow_up_requested: bool
    resync_count: int

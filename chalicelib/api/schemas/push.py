"""Provider push deliveries (shapes fixed by the providers, so unknown fields are ignored, not refused)."""

from pydantic import ConfigDict, Field

from chalicelib.api.schemas.common import ApiModel


class PubSubMessage(ApiModel):
    model_config = ConfigDict(extra="ignore")
    data: str = Field(min_length=1, max_length=65_536, description="base64 JSON {emailAddress, historyId}")
    messageId: str | None = Field(None, max_length=200)


class PubSubPush(ApiModel):
    """A Pub/Sub push delivery (cloud.google.com/pubsub/docs/push#receive_push)."""
    model_config = ConfigDict(extra="ignore")
    message: PubSubMessage
    subscription: str | None = Field(None, max_length=500)


class GraphPushQuery(ApiModel):
    """The query of a Microsoft Graph notification POST: `validationToken` only in the validation handshake."""
    model_config = ConfigDict(extra="ignore")
    validationToken: str | None = Field(None, max_length=4096)

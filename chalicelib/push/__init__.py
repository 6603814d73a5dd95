"""Provider push notifications (Gmail Pub/Sub, Microsoft Graph change notifications) → coalesced sync requests."""

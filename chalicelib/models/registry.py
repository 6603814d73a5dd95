"""The list of table models; `infra/resources.yaml` must define a table for each (a test checks)."""
from chalicelib.models.tenant import ApiKey, Tenant

MODELS: list[type] = [Tenant, ApiKey]

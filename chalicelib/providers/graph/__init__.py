"""Microsoft Graph provider (planned: the Microsoft 365 issue). Not registered in providers/registry.py yet."""

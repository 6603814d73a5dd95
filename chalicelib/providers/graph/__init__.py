"""Microsoft Graph provider (planned: the Microsoft 365 issue). Registers its kind in providers/kinds.py when it lands."""

"""Message search: the tokenizer, the index interface and its DynamoDB backend, the visible-results query."""

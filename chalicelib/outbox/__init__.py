"""Sending mail from the CRM: compose the MIME (`compose`), accept it into the outbox (`service`), deliver it
exactly once through the mailbox's provider (`delivery`)."""

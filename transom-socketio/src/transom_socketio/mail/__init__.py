"""Account mail: the verification and password-reset messages, their editable templates,
and their delivery over SMTP (``SMTP_URL``) or, in development, to an outbox in the
database (``GET /dev/mail``), retried in the background so no request waits for it."""

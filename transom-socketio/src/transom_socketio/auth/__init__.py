"""Users, passwords, JWTs, login throttling and one-time socket tokens."""

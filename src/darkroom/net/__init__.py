"""Outbound HTTP on a user's behalf: the address policy (``guard``) and a guarded fetcher
(``fetch``)."""

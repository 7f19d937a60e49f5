"""Identity, access and data protection: tokens, roles, passwords, envelope encryption,
the activity log's hash chain and the failed-login limiter.

Pure logic on top of :mod:`despina.core`: the control store persists users, tokens and
activity; the API applies the roles; jobs and tasks seal what they write.
"""

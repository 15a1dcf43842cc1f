"""Stoker's health checker: a pure policy, one-attempt checkers, the loop that paces them,
and where the HTTP and TCP checks connect (`loopback`: 127.0.0.1, then ::1, the name
`localhost` never resolved)."""

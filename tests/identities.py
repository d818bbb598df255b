"""The tenant identities the suites share, defined once. A suite whose identity differs in any
field defines its own, under a name of its own."""

from __future__ import annotations

from greentic_session import TenantCtx

ALICE = TenantCtx.new("dev", "tenant-42", team="support", user="alice")
BOB = ALICE.with_user("bob")  # alice's tenant and team, another user
NO_USER = ALICE.with_user(None)  # alice's tenant and team, no user (a userless session)
# The user the wait suites register waits for (Rust's wait tests use the same identity).
WAITING_USER = TenantCtx.new("dev", "tenant-a", user="user-77")

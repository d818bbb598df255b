"""The size limit's bound: it never lets through a session that encodes to more than the limit,
and never refuses one that fits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greentic_session import InvalidInputError, SessionCursor, SessionData, TenantCtx
from greentic_session.codec import encode_session_data
from greentic_session.limits import check_data
from greentic_session.schema import check_writable

# Printable and control characters (escaped up to 6 bytes), plus non-ASCII (the slow path).
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)
idents = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)

sessions = st.builds(
    lambda env, user, attrs, trace, node, body: SessionData(
        tenant_ctx=TenantCtx.new(env, "t", user=user, attributes=attrs, trace_id=trace),
        flow_id="f",
        cursor=SessionCursor(node_pointer=node),
        context_json=body,
    ),
    idents,
    st.none() | idents,
    st.dictionaries(texts, texts, max_size=8),
    st.none() | texts,
    texts,
    texts,
)


@settings(max_examples=300, deadline=None)
@given(data=sessions)
def test_the_bound_is_exact_at_the_limit(data: SessionData) -> None:
    """A session exactly at the limit passes; one byte less refuses it."""
    size = len(encode_session_data(data))
    chars = check_writable(data)
    check_data(data, size, chars)
    with pytest.raises(InvalidInputError, match="max_blob_bytes"):
        check_data(data, size - 1, chars)

"""Schemathesis hooks for scripts/api-fuzz.sh (SCHEMATHESIS_HOOKS=schemathesis_hooks).

tus chunks are raw bytes of `application/offset+octet-stream`, a media type schemathesis does not
generate by itself: any bytes are a valid chunk body.
"""
from hypothesis import strategies as st
import schemathesis

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))


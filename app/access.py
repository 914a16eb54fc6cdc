"""Who may use a served dashboard. Streamlit has no login of its own, so `ebm-dashboard` hands the
app a SHA-256 of the password through the environment and the entry page asks for it before any
page runs; `--read-only` turns off what writes (names, notes) or spends the server's compute
(Generate). Standard library and Streamlit only: the light pages stay free of torch."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

PASSWORD_ENV = "EBM_DASHBOARD_PASSWORD"  # what a user sets instead of --password (kept out of `ps`)
PASSWORD_HASH_ENV = "EBM_DASHBOARD_PASSWORD_SHA256"  # what the launcher hands the app
READ_ONLY_ENV = "EBM_DASHBOARD_READ_ONLY"
SESSION_KEY = "ebm_signed_in"


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def is_loopback(address: str) -> bool:
    """Whether an address serves this machine only (localhost, 127.0.0.0/8, ::1)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def read_only() -> bool:
    return os.environ.get(READ_ONLY_ENV) == "1"


def signed_in() -> bool:
    """True when no password is set or this session gave it; otherwise draws the sign-in form."""
    import streamlit as st

    expected = os.environ.get(PASSWORD_HASH_ENV)
    if not expected or st.session_state.get(SESSION_KEY):
        return True
    st.title("ebm-lab")
    with st.form("sign-in"):
        given = st.text_input("Password", type="password", key="ebm_password")
        submitted = st.form_submit_button("Sign in")
    if submitted and hmac.compare_digest(password_hash(given), expected):
        st.session_state[SESSION_KEY] = True
        st.rerun()
    if submitted:
        st.error("Wrong password.")
    return False

"""Masking of credentials before anything is written to disk or shown in the dashboard.

Storage URLs such as ``postgresql://user:secret@host/db`` end up in study attrs, exported
provenance and logs; a reader must see which database was used, never its password.
Masking errs on the side of hiding too much: a password containing a raw ``@`` is masked
up to the last ``@`` of the URL, so it is never partly revealed.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MASK = "***"

# scheme://user:PASSWORD@host — the password runs to the LAST "@" of the whitespace-free token.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)(?P<password>\S*)(?=@)")
# ?password=...&token=... in a query string or DSN.
_QUERY = re.compile(r"(?P<head>[?&;](?P<key>[A-Za-z0-9_.\-]+)=)(?P<value>[^&;#\s]*)")

_SECRET_WORDS = {"password", "passwd", "pwd", "passphrase", "secret", "token", "credential", "credentials",
                 "apikey", "secretkey"}
_KEY_QUALIFIERS = {"api", "access", "private", "secret", "signing", "encryption", "client"}
_TOKENIZER_WORDS = {"bos", "eos", "pad", "unk", "sep", "cls", "mask"}  # "eos_token" is not a secret


def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a credential (``db_password``, ``hfToken``, ``api_key``).

    Only the last word counts, so ``eos_token_id``, ``max_tokens`` or ``sort_key`` are kept.
    """
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]
    if not words:
        return False
    last, prev = words[-1], words[-2] if len(words) > 1 else ""
    if last == "token" and prev in _TOKENIZER_WORDS:
        return False
    if last in _SECRET_WORDS or last.endswith(("password", "passwd")):
        return True
    return last == "key" and prev in _KEY_QUALIFIERS


def mask_url(url: str) -> str:
    """Replace URL passwords and secret query parameters with ``***`` everywhere in `url`.

    ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``. Works on any
    text, so an error message that quotes a URL can be masked too.
    """

    def userinfo(m: re.Match) -> str:
        return m["head"] + (MASK if m["password"] else "")

    def query(m: re.Match) -> str:
        return m["head"] + (MASK if m["value"] and is_secret_key(m["key"]) else m["value"])

    return _QUERY.sub(query, _USERINFO.sub(userinfo, url))


def mask_secrets(obj: Any) -> Any:
    """A copy of `obj` (nested mappings/sequences) with secret-named values and URL passwords masked.

    Mappings become dicts, tuples stay tuples, other sequences become lists; the input is not
    modified. Empty or None secrets stay as they are, so "no password set" is still visible.
    """
    if isinstance(obj, str):
        return mask_url(obj)
    if isinstance(obj, Mapping):
        return {k: MASK if isinstance(k, str) and is_secret_key(k) and obj[k] not in (None, "")
                else mask_secrets(obj[k]) for k in obj}
    if isinstance(obj, tuple):
        return tuple(mask_secrets(v) for v in obj)
    if isinstance(obj, Sequence) and not isinstance(obj, (bytes, bytearray)):
        return [mask_secrets(v) for v in obj]
    return obj


__all__ = ["MASK", "is_secret_key", "mask_url", "mask_secrets"]

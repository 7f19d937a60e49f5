"""Tokens, scopes, roles and passwords."""

from __future__ import annotations

from datetime import timedelta

import pytest

from despina.core.errors import ConfigError
from despina.security.passwords import hash_password, verify_password
from despina.security.roles import Permission, Principal, Role
from despina.security.tokens import (
    Scope,
    check_given_token,
    hash_token,
    new_token,
    parse_duration,
)


def test_tokens_carry_256_random_bits_and_are_stored_as_hashes() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    t = next(iter(tokens))
    assert t.startswith("dsp_") and len(t) == 4 + 43  # 32 bytes, URL-safe base64
    assert hash_token(t) != t and len(hash_token(t)) == 64
    assert hash_token(t) == hash_token(t) and hash_token(t) != hash_token(t + "x")


def test_a_supplied_admin_token_must_be_strong() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        check_given_token("secret")
    assert check_given_token(" " + "x" * 40 + "\n") == "x" * 40


def test_durations_and_scopes_parse_or_say_how() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    for bad in ("30", "0d", "1y", ""):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration(bad)
    assert Scope.parse("group:prep") == Scope("group", "prep")
    for bad in ("prep", "cluster:c", "group:"):
        with pytest.raises(ConfigError, match="scope"):
            Scope.parse(bad)
    with pytest.raises(ConfigError, match="unknown role"):
        Role.parse("root")


def test_roles_and_scopes_decide_what_a_principal_may_do() -> None:
    op = Principal("o", Role.OPERATOR, "t1")
    assert op.allows(Permission.OPERATE) and not op.allows(Permission.ADMIN)
    viewer = Principal("v", Role.VIEWER, "t2")
    assert viewer.allows(Permission.READ) and not viewer.allows(Permission.OPERATE)
    pred = Principal("p", Role.PREDICTOR, "t3", (Scope("deployment", "digits"),))
    assert pred.allows(Permission.PREDICT, "deployment", "digits")
    assert not pred.allows(Permission.PREDICT, "deployment", "other")
    assert not pred.allows(Permission.PREDICT)  # a route naming no deployment
    assert not pred.allows(Permission.READ, "deployment", "digits")
    assert Principal("a", Role.ADMIN, "t4").allows(Permission.ADMIN)


def test_passwords_are_argon2id() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong horse battery")
    assert not verify_password("not a hash", "x")
    with pytest.raises(ConfigError, match="12 characters"):
        hash_password("short")


def test_a_hardened_process_is_not_dumpable() -> None:
    import subprocess
    import sys

    code = (
        "from despina.security.process import dumpable, harden_process\n"
        "before = dumpable(); ok = harden_process(); print(before, ok, dumpable())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if sys.platform.startswith("linux"):
        assert out.stdout.split() == ["True", "True", "False"]
    else:
        assert out.stdout.split() == ["None", "False", "None"]

"""What a dashboard password must not be: short, one of the most common passwords (a list shipped in the
package, dashboard/common_passwords.txt), one character repeated, a simple run or repeated pattern, or the
username. The login limit slows guessing down; this keeps the first guesses of any list from working.

The refusal names the rule in Chinese and English together: it reaches the admin through the API, the CLI
and the login of whoever was given the password.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

MIN_LENGTH = 10
MAX_LENGTH = 200
COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")

MESSAGES = {
    "too_short": f"密码至少需要 {MIN_LENGTH} 个字符 / The password needs at least {MIN_LENGTH} characters",
    "too_long": f"密码最多 {MAX_LENGTH} 个字符 / The password may have at most {MAX_LENGTH} characters",
    "common": "这是最常用的密码之一，请换一个 / This is one of the most common passwords; choose another",
    "repetitive": "密码不能是重复的字符或简单序列 / The password may not be a repeated character, pattern or simple "
                  "sequence",
    "username": "密码不能与用户名相同 / The password may not be the username",
}


class WeakPassword(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGES[reason])
        self.reason = reason


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _repetitive(password: str) -> bool:
    """One character repeated, a short unit repeated (abcabcabca), or a run with a constant step
    (0123456789, abcdefghij, 9876543210, 2468024680 is not one: its step wraps)."""
    for unit in range(1, 4):
        if len(password) >= 2 * unit and password == (password[:unit] * (len(password) // unit + 1))[:len(password)]:
            return True
    steps = {ord(b) - ord(a) for a, b in zip(password, password[1:])}
    return len(steps) == 1 and abs(next(iter(steps))) <= 2


def check_password(password: str, username: str = "") -> str:
    """The password if it passes; raises WeakPassword naming the first rule it breaks."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword("too_short")
    if len(password) > MAX_LENGTH:
        raise WeakPassword("too_long")
    folded = password.casefold()
    if username and folded == username.casefold():
        raise WeakPassword("username")
    if _repetitive(folded):
        raise WeakPassword("repetitive")
    if folded in common_passwords() or folded.strip() in common_passwords():
        raise WeakPassword("common")
    return password

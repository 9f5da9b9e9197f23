"""Password policy: a strength estimate (zxcvbn), not a deny list.

A deny list accepts ``aaaaaaaa1`` and refuses nothing it has not heard of; zxcvbn estimates how many guesses an
attacker needs, knowing dictionaries, keyboard walks, repeats, dates and the account's own name. We ask for a
score of at least 3 of 4 ("safely unguessable: moderate protection from offline slow-hash attacks"), and explain
a refusal in the user's language with zxcvbn's own warning translated.
"""

from __future__ import annotations

from dataclasses import dataclass

from zxcvbn import zxcvbn

MIN_SCORE = 3
MIN_LENGTH = 10
MAX_LENGTH = 256  # zxcvbn is quadratic-ish in length; nobody types more
# Words an attacker would try first against this system, in both languages.
CONTEXT_WORDS = ("streetwatch", "admin", "matkhau", "mat khau", "canhsat", "congan", "phuong", "camera")

_WARNINGS_VI = {
    "Straight rows of keys are easy to guess.": "Các hàng phím liền nhau rất dễ đoán.",
    "Short keyboard patterns are easy to guess.": "Các mẫu bàn phím ngắn rất dễ đoán.",
    'Repeats like "aaa" are easy to guess.': 'Các ký tự lặp lại như "aaa" rất dễ đoán.',
    'Repeats like "abcabcabc" are only slightly harder to guess than "abc".': (
        'Các chuỗi lặp như "abcabcabc" chỉ khó đoán hơn "abc" một chút.'
    ),
    'Sequences like "abc" or "6543" are easy to guess.': 'Các dãy như "abc" hoặc "6543" rất dễ đoán.',
    "Recent years are easy to guess.": "Các năm gần đây rất dễ đoán.",
    "Dates are often easy to guess.": "Ngày tháng thường rất dễ đoán.",
    "This is a top-10 common password.": "Đây là một trong 10 mật khẩu phổ biến nhất.",
    "This is a top-100 common password.": "Đây là một trong 100 mật khẩu phổ biến nhất.",
    "This is a very common password.": "Đây là một mật khẩu rất phổ biến.",
    "This is similar to a commonly used password.": "Mật khẩu này giống một mật khẩu phổ biến.",
    "A word by itself is easy to guess.": "Một từ đơn lẻ rất dễ đoán.",
    "Names and surnames by themselves are easy to guess.": "Chỉ dùng tên hoặc họ thì rất dễ đoán.",
    "Common names and surnames are easy to guess.": "Tên và họ phổ biến rất dễ đoán.",
}

_MESSAGES = {
    "en": {
        "too_short": "The password needs at least {min} characters.",
        "too_long": "The password may have at most {max} characters.",
        "weak": "The password is too easy to guess (strength {score} of 4, at least {need} needed).",
        "hint": "Use a few unrelated words, e.g. four words with dashes.",
    },
    "vi": {
        "too_short": "Mật khẩu cần ít nhất {min} ký tự.",
        "too_long": "Mật khẩu không được dài quá {max} ký tự.",
        "weak": "Mật khẩu quá dễ đoán (độ mạnh {score}/4, cần ít nhất {need}).",
        "hint": "Hãy dùng vài từ không liên quan, ví dụ bốn từ nối bằng dấu gạch ngang.",
    },
}


@dataclass(frozen=True)
class PasswordProblem:
    """Why a password was refused: a code for programs and ``message(lang)`` for people."""

    code: str  # too_short | too_long | weak
    score: int
    warning: str  # zxcvbn's warning in English ("" when none)

    def message(self, lang: str) -> str:
        texts = _MESSAGES.get(lang, _MESSAGES["en"])
        main = texts[self.code].format(min=MIN_LENGTH, max=MAX_LENGTH, score=self.score, need=MIN_SCORE)
        if self.code != "weak":
            return main
        warning = _WARNINGS_VI.get(self.warning, self.warning) if lang == "vi" else self.warning
        return " ".join(part for part in (main, warning, texts["hint"]) if part)


def check_password(
    password: str, *, username: str = "", extra_words: tuple[str, ...] = ()
) -> PasswordProblem | None:
    """None when ``password`` is acceptable for ``username``, else the problem."""
    if len(password) < MIN_LENGTH:
        return PasswordProblem("too_short", 0, "")
    if len(password) > MAX_LENGTH:
        return PasswordProblem("too_long", 0, "")
    inputs = [word for word in (username, *CONTEXT_WORDS, *extra_words) if word]
    result = zxcvbn(password, user_inputs=inputs)
    score = int(result["score"])
    if score < MIN_SCORE:
        return PasswordProblem("weak", score, str(result["feedback"].get("warning") or ""))
    return None

"""Mailbox addresses in the one form calbridge stores: NFKC, a lowercase local part, the domain in
its ASCII (punycode) form; an address whose letters mix scripts is refused. Pure, no I/O."""

from __future__ import annotations

import unicodedata
from collections import Counter

from email_validator import EmailNotValidError, validate_email

# Scripts that may share one name, after UTS #39's "highly restrictive" level: Japanese, Chinese
# and Korean names mix Han with their own scripts, and all of them mix with Latin.
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# First words of Unicode character names that are not the script's own name.
_SCRIPT_OF_NAME = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED": "ARABIC",  # EXTENDED ARABIC-INDIC DIGIT …
    "KATAKANA-HIRAGANA": "KATAKANA",
}


def _script(char: str) -> str | None:
    """The script of a letter or digit, from its Unicode name (the standard library has no script
    property; after NFKC the first word of the name is the script for every letter an address
    can hold); None for what every script shares: ASCII digits, marks, punctuation, symbols."""
    if unicodedata.category(char)[0] not in "LN" or (char.isascii() and not char.isalpha()):
        return None
    first = unicodedata.name(char, "").split(" ", 1)[0]
    if not first or first == "MODIFIER":
        return None
    return _SCRIPT_OF_NAME.get(first, first)


def _refuse_mixed_scripts(text: str, where: str) -> None:
    """ValueError naming the characters of `text` outside its main script, when its scripts are
    not a mix that names are written in: such a text can look exactly like another one."""
    scripts = [(char, script) for char in text if (script := _script(char)) is not None]
    used = {script for _, script in scripts}
    if len(used) < 2 or any(used <= mix for mix in _SCRIPT_MIXES):
        return
    counts = Counter(script for _, script in scripts)
    main = "LATIN" if "LATIN" in used else counts.most_common(1)[0][0]
    # Code points and names, never the characters themselves: printed, they would look like the
    # address the sender meant.
    odd = dict.fromkeys(
        f"U+{ord(char):04X} {unicodedata.name(char, '?')}"
        for char, script in scripts
        if script != main
    )
    names = " and ".join(sorted(script.title() for script in used))
    raise ValueError(
        f"{where} mixes {names} letters, which can look alike: {', '.join(odd)}; "
        "type the address with the letters of one script"
    )


def normalize_mailbox(value: str) -> str:
    """The mailbox address in its stored form; ValueError with the reason if invalid or if it
    mixes scripts.

    The form: NFKC (fullwidth and other compatibility letters become the plain ones), the local
    part lowercase, the domain in its ASCII form (IDNA 2008 with UTS #46 mapping, by
    email-validator through the `idna` package), so `bücher.example` and `xn--bcher-kva.example`
    are stored alike as the latter, and a look-alike domain shows as the punycode it is.
    """
    text = unicodedata.normalize("NFKC", value.strip())
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    _refuse_mixed_scripts(result.local_part, "the part before the @")
    for label in result.domain.split("."):
        _refuse_mixed_scripts(label, "a part of the domain")
    return f"{result.local_part.lower()}@{result.ascii_domain.lower()}"

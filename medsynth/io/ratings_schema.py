"""The ratings.csv contract (DESIGN.md) shared by the study export and the analysis reader."""

#: columns every ratings.csv has, in this order
RATINGS_REQUIRED_COLUMNS = (
    "reader_id",
    "case_id",
    "is_synthetic",  # 0/1 truth
    "called_synthetic",  # 0/1 the reader's call
    "confidence",  # 1-5, in the call
    "realism",  # 1-5 Likert
    "repeat",  # 0 first showing, 1 repeated showing
)
#: optional numeric answer columns
RATINGS_OPTIONAL_NUMERIC_COLUMNS = ("slice_consistency", "anatomy", "seconds")

#: first characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
#: the prefix that neutralises them; a text cell already starting with it is prefixed too, so
#: :func:`restore_text_cell` gives back exactly what :func:`neutralise_text_cell` was given
NEUTRALISING_PREFIX = "'"


def neutralise_text_cell(value: object) -> object:
    """``'``-prefix a text cell that starts with ``= + - @``, tab, CR or ``'``; anything else as is."""
    if isinstance(value, str) and value.startswith((*FORMULA_TRIGGERS, NEUTRALISING_PREFIX)):
        return NEUTRALISING_PREFIX + value
    return value


def restore_text_cell(value: object) -> object:
    """Inverse of :func:`neutralise_text_cell` for a text cell read back from a ratings.csv."""
    if isinstance(value, str) and value.startswith(NEUTRALISING_PREFIX):
        return value[len(NEUTRALISING_PREFIX) :]
    return value

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

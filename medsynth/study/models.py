"""SQLAlchemy 2 ORM models of a reader study.

One database may hold several studies. A study owns its cases, readers and questions; every
reader (role ``reader``) has an assignment: their own seeded order of the study's cases, with
some cases shown twice (``repeat`` = 1 on the second showing). An answer is one value for one
question of one showing; the unique constraint ``(reader_id, case_id, question, repeat)`` makes a
double submit store a single row, whatever the number of app servers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timezone-aware current time (UTC)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is what Alembic's first revision creates."""


class Study(Base):
    """A reader study: its questions (validated YAML, stored as JSON) and settings."""

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | closed
    seed: Mapped[int] = mapped_column(Integer, default=0)
    repeat_fraction: Mapped[float] = mapped_column(Float, default=0.1)
    allow_back: Mapped[bool] = mapped_column(Boolean, default=False)
    questions: Mapped[list] = mapped_column(JSON)
    render: Mapped[dict] = mapped_column(JSON)  # grid, modality, window presets (medsynth.study.rendering)
    #: per-study secret (``secrets.token_hex``): drives case sampling and every reading order; it
    #: lives only here (never in config, logs, exports or pages) and reproduces the study exactly
    secret: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(10), default="mr")  # mr | ct (viewer windowing)
    audit: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # last `study audit` result
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    cases: Mapped[list[Case]] = relationship(back_populates="study", order_by="Case.id")
    readers: Mapped[list[Reader]] = relationship(back_populates="study", order_by="Reader.id")


class Case(Base):
    """One volume of the study. ``opaque_id`` is all a reader ever learns about it."""

    __tablename__ = "study_case"
    __table_args__ = (
        UniqueConstraint("study_id", "opaque_id", name="uq_case_opaque"),
        UniqueConstraint("study_id", "source_path", name="uq_case_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    opaque_id: Mapped[str] = mapped_column(String(32))
    source_path: Mapped[str] = mapped_column(Text)
    case_key: Mapped[str] = mapped_column(String(300))  # file name without .nii/.nii.gz (joins per_image.csv)
    is_synthetic: Mapped[bool] = mapped_column(Boolean)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)

    study: Mapped[Study] = relationship(back_populates="cases")


class ViewerStream(Base):
    """One case coded for the browser viewer once (:mod:`medsynth.study.viewer_payload`): the
    header without the showing, the zlib stream up to its sync flush and its Adler-32. Serving a case
    reads this row and pads the stream to the study's ``render.viewer.message_bytes``."""

    __tablename__ = "viewer_stream"

    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id", ondelete="CASCADE"), primary_key=True)
    header: Mapped[dict] = mapped_column(JSON)
    deflated: Mapped[bytes] = mapped_column(LargeBinary)
    adler: Mapped[int] = mapped_column(BigInteger)


class Reader(Base):
    """A person with a login token (stored as a salted scrypt hash, never in clear)."""

    __tablename__ = "reader"
    __table_args__ = (UniqueConstraint("study_id", "name", name="uq_reader_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # reader | admin
    key_id: Mapped[str] = mapped_column(String(32), unique=True)  # public half of the token
    token_salt: Mapped[bytes] = mapped_column()
    token_hash: Mapped[bytes] = mapped_column()
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)  # answers from `study simulate`
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    study: Mapped[Study] = relationship(back_populates="readers")
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="reader", order_by="Assignment.position"
    )


class Assignment(Base):
    """Position ``position`` (0-based) of a reader's order shows case ``case_id``.

    ``showing_id`` is the random opaque id the reader sees: one per showing, so a repeated showing
    looks like any other case.
    """

    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("reader_id", "position", name="uq_assignment_position"),
        UniqueConstraint("reader_id", "case_id", "repeat", name="uq_assignment_showing"),
        UniqueConstraint("showing_id", name="uq_assignment_showing_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    showing_id: Mapped[str] = mapped_column(String(32))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer, default=0)  # 0 first showing, 1 repeated showing
    first_shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    reader: Mapped[Reader] = relationship(back_populates="assignments")
    case: Mapped[Case] = relationship()


class Answer(Base):
    """One value for one question of one showing; ``value`` is JSON text (bool, int, str)."""

    __tablename__ = "answer"
    __table_args__ = (
        UniqueConstraint("reader_id", "case_id", "question", "repeat", name="uq_answer_showing"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(100))
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[str] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # time on case
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    edits: Mapped[int] = mapped_column(Integer, default=0)  # > 0 only where allow_back permits edits


class AnswerDraft(Base):
    """A reader's unsubmitted answers for one showing (JSON object), deleted on submit."""

    __tablename__ = "answer_draft"
    __table_args__ = (UniqueConstraint("assignment_id", name="uq_draft_assignment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"))
    answers: Mapped[dict] = mapped_column(JSON)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignInFailure(Base):
    """One failed sign-in: when, from which address and browser session, for which key id.

    Read back for the sign-in backoff (medsynth.study.accounts) and kept as the failure log.
    """

    __tablename__ = "sign_in_failure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    address: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    client: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)

"""Administration: create a study (organiser, CLI) and the admin page's status, progress and controls.

:meth:`Administration.create_study` is for whoever holds the database URL; everything else takes
a :class:`~medsynth.study.session.ReaderSession` with the admin role, checked here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from medsynth.errors import ConfigError
from medsynth.study.assignment import new_study_secret, storage_order
from medsynth.study.db import read_session, write_session
from medsynth.study.models import Answer, Assignment, Case, Reader, Study
from medsynth.study.session import ReaderSession, StudyStore

OPAQUE_ID_BYTES = 6
MODALITIES = ("mr", "ct")


def case_key(path: str | Path) -> str:
    """File name without .nii / .nii.gz (and other volume suffixes): the ratings.csv ``case_id``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class Administration(StudyStore):
    """Study creation and the admin's view of a study."""

    def create_study(
        self,
        name: str,
        real_files: Sequence[str | Path],
        synthetic_files: Sequence[str | Path],
        questions: list[dict],
        render: Mapping[str, Any],
        seed: int = 0,
        repeat_fraction: float = 0.1,
        allow_back: bool = False,
        model: str | None = None,
        checkpoint: str | None = None,
        models: Mapping[str, str] | None = None,
        secret: str | None = None,
        modality: str = "mr",
        audit: dict | None = None,
    ) -> int:
        """Create a study with these cases (already sampled); returns its id.

        Cases are stored in an order drawn from the study's ``secret`` (a fresh one unless given:
        pass the secret that sampled the cases), so row ids carry no truth. ``models`` optionally
        maps a synthetic file path to the name of the model that made it; ``seed`` is recorded
        only (public, it drives nothing a reader could predict); ``audit`` is the blinding audit
        made before storing (medsynth.study.audit).

        Raises:
            ConfigError: a study with this name exists already, or an unknown modality.
        """
        if modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {', '.join(MODALITIES)}, got '{modality}'")
        secret = secret or new_study_secret()
        with write_session(self.factory) as s:
            if s.scalar(select(Study).where(Study.name == name)) is not None:
                raise ConfigError("study", f"a study named '{name}' exists already in this database")
            study = Study(
                name=name, seed=int(seed), repeat_fraction=float(repeat_fraction), allow_back=bool(allow_back),
                questions=list(questions), render=dict(render), secret=secret, modality=modality, audit=audit,
            )  # fmt: skip
            s.add(study)
            s.flush()
            entries = [(Path(p), False) for p in real_files] + [(Path(p), True) for p in synthetic_files]
            used: set[str] = set()
            for index in storage_order(len(entries), secret):
                path, synthetic = entries[index]
                opaque = secrets.token_hex(OPAQUE_ID_BYTES)
                while opaque in used:
                    opaque = secrets.token_hex(OPAQUE_ID_BYTES)
                used.add(opaque)
                s.add(
                    Case(
                        study_id=study.id, opaque_id=opaque, source_path=str(path.resolve()),
                        case_key=case_key(path), is_synthetic=synthetic,
                        model=(models or {}).get(str(path), model) if synthetic else None,
                        checkpoint=checkpoint if synthetic else None,
                    )
                )  # fmt: skip
            return study.id

    def study_names(self) -> list[str]:
        with read_session(self.factory) as s:
            return list(s.scalars(select(Study.name).order_by(Study.id)))

    def reader_progress(self, rs: ReaderSession) -> list[dict]:
        """Per reader: name, role, done, total, last answer time, account state (admin only)."""
        from medsynth.study.session import reader_usable

        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            readers = s.scalars(select(Reader).where(Reader.study_id == admin.study_id).order_by(Reader.id))
            out = []
            for reader in readers:
                total = s.scalar(select(func.count()).where(Assignment.reader_id == reader.id))
                done = s.scalar(
                    select(func.count()).where(
                        Assignment.reader_id == reader.id, Assignment.completed_at.is_not(None)
                    )
                )
                last = s.scalar(select(func.max(Answer.submitted_at)).where(Answer.reader_id == reader.id))
                out.append(
                    {
                        "reader": reader.name, "role": reader.role, "done": int(done), "total": int(total),
                        "last_answer": last, "simulated": bool(reader.simulated),
                        "can_sign_in": reader_usable(reader),
                    }
                )  # fmt: skip
            return out

    def study_status(self, rs: ReaderSession) -> dict:
        """Counts of cases (real/synthetic), readers, answered showings and answers (admin only)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            study = s.get(Study, admin.study_id)
            n_syn = s.scalar(
                select(func.count()).where(Case.study_id == study.id, Case.is_synthetic.is_(True))
            )
            n_cases = s.scalar(select(func.count()).where(Case.study_id == study.id))
            reader_ids = select(Reader.id).where(Reader.study_id == study.id, Reader.role == "reader")
            n_readers = s.scalar(select(func.count()).select_from(reader_ids.subquery()))
            total = s.scalar(select(func.count()).where(Assignment.reader_id.in_(reader_ids)))
            done = s.scalar(
                select(func.count()).where(
                    Assignment.reader_id.in_(reader_ids), Assignment.completed_at.is_not(None)
                )
            )
            n_answers = s.scalar(select(func.count()).where(Answer.reader_id.in_(reader_ids)))
            return {
                "study": study.name, "status": study.status, "modality": study.modality, "cases": n_cases,
                "synthetic_cases": n_syn, "real_cases": n_cases - n_syn, "readers": n_readers,
                "showings_done": done, "showings_total": total, "answers": n_answers,
                "repeat_fraction": study.repeat_fraction,
            }  # fmt: skip

    def study_audit(self, rs: ReaderSession) -> dict | None:
        """The study's last blinding audit (medsynth.study.audit), or None (admin only)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            audit = s.get(Study, admin.study_id).audit
            return dict(audit) if audit else None

    def set_status(self, rs: ReaderSession, status: str) -> None:
        """Open or close the study for answers (admin only)."""
        if status not in ("open", "closed"):
            raise ConfigError("status", "must be open or closed")
        with write_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            s.get(Study, admin.study_id).status = status

    def assignment_of(self, rs: ReaderSession, reader_name: str) -> list[dict]:
        """A reader's full order with truth (admin only: it reveals ground truth)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            reader = s.scalar(
                select(Reader).where(Reader.study_id == admin.study_id, Reader.name == reader_name)
            )
            if reader is None:
                raise ConfigError("reader", f"no reader named '{reader_name}'")
            rows = s.execute(
                select(Assignment, Case)
                .join(Case, Case.id == Assignment.case_id)
                .where(Assignment.reader_id == reader.id)
                .order_by(Assignment.position)
            )
            return [
                {
                    "position": a.position, "case_id": c.case_key, "opaque_id": a.showing_id,
                    "repeat": a.repeat, "is_synthetic": int(c.is_synthetic), "completed": a.completed_at is not None,
                }
                for a, c in rows
            ]  # fmt: skip

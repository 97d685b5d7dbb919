"""The example configs and job scripts that ship with the package: list them, copy them out.

In a clone they are the repository's ``configs/`` and ``jobs/`` folders. A wheel carries a
copy of both inside the package (``hpc_fedprune/_shipped/``, put there at build time by
``setup.py``), so that after ``pip install hpc_fedprune`` without a clone
``python -m hpc_fedprune config list`` still finds them and ``config copy`` puts them into
the working folder, in the same layout as the repository (``configs/X.yaml``,
``jobs/run.sbatch``), where the README's commands expect them.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

#: The folders that ship, in the order they are listed.
FOLDERS = ("configs", "jobs")

_PACKAGE = Path(__file__).resolve().parent
_INSIDE = _PACKAGE / "_shipped"


@dataclass(frozen=True)
class ShippedFile:
    """One shipped file.

    Attributes
    ----------
    folder : str
        ``configs`` or ``jobs``.
    name : str
        File name inside the folder.
    path : pathlib.Path
        Where it is on this machine.
    """

    folder: str
    name: str
    path: Path

    @property
    def relative(self) -> str:
        """``folder/name``, as in the repository."""
        return f"{self.folder}/{self.name}"

    def description(self, width: int = 90) -> str:
        """What the file is: the first phrase of its leading comment, or ``""``."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return ""
        words: list[str] = []
        for line in lines:
            if line.startswith("#!"):
                continue
            if not line.startswith("#") or (words and not line.lstrip("#").strip()):
                break
            words.extend(line.lstrip("#").split())
        text = " ".join(words)
        # The first phrase: up to the first colon or full stop that ends a word.
        for mark in (": ", ". "):
            text = text.split(mark, 1)[0]
        text = text.rstrip(".:")
        return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def shipped_root() -> Path:
    """The folder that holds ``configs/`` and ``jobs/``.

    Inside an installed wheel that is ``hpc_fedprune/_shipped``; in a clone (or an editable
    install of one) the repository root.

    Raises
    ------
    InputError
        Neither exists (a broken installation).
    """
    if (_INSIDE / "configs").is_dir():
        return _INSIDE
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout
    raise InputError(
        f"no shipped configs found (looked in {_INSIDE} and {checkout / 'configs'}); "
        "reinstall hpc_fedprune"
    )


def shipped_files() -> list[ShippedFile]:
    """Every shipped file, folder by folder, sorted by name."""
    root = shipped_root()
    files = []
    for folder in FOLDERS:
        base = root / folder
        if base.is_dir():
            files.extend(
                ShippedFile(folder, p.name, p)
                for p in sorted(base.iterdir())
                if p.is_file() and not p.name.startswith(".")
            )
    return files


def select(names: list[str]) -> list[ShippedFile]:
    """The shipped files that ``names`` stand for, in the order given, without repeats.

    A name is a folder (``configs``, ``jobs``: all of it), ``folder/file``, a file name
    (``run.sbatch``), or a config without its ``.yaml``.

    Raises
    ------
    InputError
        A name that matches nothing (with the closest shipped names).
    """
    files = shipped_files()
    chosen: list[ShippedFile] = []
    for raw in names:
        name = raw.strip().rstrip("/")
        if name in FOLDERS:
            matches = [f for f in files if f.folder == name]
        else:
            matches = [f for f in files if name in (f.relative, f.name) or f.name == f"{name}.yaml"]
        if not matches:
            known = [f.name for f in files] + [f.relative for f in files]
            close = difflib.get_close_matches(name, known, n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else "; `python -m hpc_fedprune config list` shows them"
            )
            raise InputError(f"config copy: {raw!r} is not a shipped config or job script{hint}")
        chosen.extend(f for f in matches if f not in chosen)
    return chosen


def copy_shipped(names: list[str], to: str | Path | None = None) -> list[Path]:
    """Copy shipped files into the working folder; return the files written.

    Parameters
    ----------
    names : list of str
        What to copy (see `select`).
    to : str or Path, optional
        Target folder. Default: the repository layout under the working folder
        (``./configs/X.yaml``, ``./jobs/run.sbatch``), so that the README's commands work
        as written.

    Raises
    ------
    InputError
        An unknown name, or a target file that already exists (nothing is copied then).
    """
    files = select(names)
    targets = [(Path(to) / f.name if to is not None else Path(f.folder) / f.name, f) for f in files]
    existing = [str(t) for t, _ in targets if t.exists()]
    if existing:
        raise InputError(
            f"config copy: {', '.join(existing)} already exist(s); nothing copied "
            "(move them away or choose another folder with --to)"
        )
    written = []
    for target, f in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.path, target)
        except OSError as exc:
            raise InputError(f"config copy: cannot write {target}: {exc.strerror or exc}") from None
        if target.suffix in (".sh", ".sbatch"):
            target.chmod(target.stat().st_mode | 0o111)
        written.append(target)
    return written

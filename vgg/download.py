"""What the dataset scripts (scripts/make_*.py) share: a download that fails (offline, a bad
checksum) says so in one line, exits 2 and leaves no folder it made behind."""
import shutil
import sys
from pathlib import Path


def new_folders(*paths) -> list[Path]:
    """For each path, its topmost folder that does not exist yet: what a failed run removes."""
    tops = []
    for p in paths:
        p, top = Path(p).absolute(), None
        while not p.exists():
            top, p = p, p.parent
        if top is not None and top not in tops:
            tops.append(top)
    return tops


def fail(message: str, created: list[Path], code: int = 2):
    """Remove the folders this run created, print one line, exit ``code``."""
    for top in created:
        shutil.rmtree(top, ignore_errors=True)
    print("error: " + " ".join(message.split()), file=sys.stderr)
    sys.exit(code)


def reason(e: BaseException) -> str:
    """A download error in a few words: urllib's reason (e.g. 'Connection refused'), else the text."""
    r = getattr(e, "reason", None) or e
    return str(getattr(r, "strerror", None) or r) or type(e).__name__

"""Where the real-world files are: ../shared/corpus beside the repository (CI has it too), or the
folder MAPILLARY_TEST_CORPUS names (e.g. for a git worktree that does not sit beside it). Tests
that need it skip, saying where they looked, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

CORPUS = Path(
    os.environ.get("MAPILLARY_TEST_CORPUS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
)
HEIC = CORPUS / "exif" / "heic_IMG_5195.HEIC"  # an iPhone's photo: a format we cannot upload

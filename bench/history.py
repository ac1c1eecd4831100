"""What was changed in Crieur after profiling the poll cycle, with the figures before and after."""

# These figures come from targeted runs during the work, not from the run that writes the
# report; the report shows them as they were measured, with where and how.

from __future__ import annotations

CHANGES: tuple[str, ...] = ()

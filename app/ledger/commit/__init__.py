"""The group commit, one folder, read in the order it runs:

- `port.py`: the one database transaction it runs against (`CommitPort`), and `IdsTaken`;
- `steps.py`: the steps top to bottom (`group_commit`), and the run again on `IdsTaken`
  (`commit_groups`);
- `claim.py`: what it claims, reads and locks, sorted;
- `precheck.py`: the unlocked check of new documents against the committed heads;
- `apply.py`: the jobs applied in order to the locked state, in pure code (`Applier`);
- `runs.py`: a large commit applied in runs, each written while the next is applied.
"""

from app.ledger.commit.port import COMMIT_ATTEMPTS, CommitPort, IdsTaken, Recorded
from app.ledger.commit.steps import commit_groups, group_commit

__all__ = ["COMMIT_ATTEMPTS", "CommitPort", "IdsTaken", "Recorded", "commit_groups", "group_commit"]

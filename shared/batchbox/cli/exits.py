"""The command line's exit statuses: what scripts can rely on."""

from __future__ import annotations

from batchbox.events import Outcome

OK = 0
INVALID = 1  # a file failed validation (nothing was uploaded)
USAGE = 2  # a bad argument, a missing file, no connection settings
NOT_FOUND = 4  # no such input

# ``submit --wait``: the outcome of the input.
BY_OUTCOME = {
    Outcome.SUCCEEDED: 0,
    Outcome.PARTIALLY_SUCCEEDED: 10,
    Outcome.FAILED: 11,
    Outcome.CANCELLED: 12,
    Outcome.EXPIRED: 13,
    Outcome.REJECTED: 14,
}
TIMEOUT = 15  # --wait gave up before the result event

EXIT_HELP = (
    "Exit status: 0 success; 1 a file is invalid (nothing uploaded); 2 usage error or no "
    "connection settings; 4 no such input; with submit --wait, the input's outcome: "
    "10 partially succeeded, 11 failed, 12 cancelled, 13 expired, 14 rejected, 15 timed out."
)

"""Ctrl-C, SIGTERM and SIGHUP while the local stack starts or stops: none is ever lost.

A clean-up holds them off, so that a second one cannot leave processes behind, and delivers them
once it is done; a start that was asked to stop stops, even when the KeyboardInterrupt was raised
where Python cannot pass it on (a finalizer that ran on the main thread at that moment).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from batchbox.local import services
from batchbox.local.services import ServiceError, ServiceGroup


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.2)  # the handler runs within this


def test_a_ctrl_c_during_a_clean_up_waits_for_its_end_then_interrupts() -> None:
    finished: list[str] = []

    def clean_up() -> None:
        with services.signals_held():
            _signal_self(signal.SIGINT)
            finished.append("clean-up")

    with pytest.raises(KeyboardInterrupt):
        clean_up()

    assert finished == ["clean-up"]


def test_a_sigterm_during_a_groups_clean_up_interrupts_after_it() -> None:
    before = signal.getsignal(signal.SIGTERM)
    finished: list[str] = []

    def clean_up() -> None:
        with ServiceGroup(), services.signals_held():
            _signal_self(signal.SIGTERM)
            finished.append("clean-up")

    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        clean_up()

    assert finished == ["clean-up"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_clean_up_with_no_signal_ends_quietly() -> None:
    before = signal.getsignal(signal.SIGINT)
    with services.signals_held():
        pass

    assert signal.getsignal(signal.SIGINT) == before


class _SignalledWhileStopping(ServiceGroup):
    """A group that gets Ctrl-C while it stops its services."""

    def stop_all(self, *, grace: float = services.STOP_GRACE_SECONDS) -> None:
        _signal_self(signal.SIGINT)
        super().stop_all(grace=grace)


def test_a_ctrl_c_while_a_group_stops_after_its_work_interrupts_once_it_stopped() -> None:
    def work() -> None:
        with _SignalledWhileStopping():
            pass

    with pytest.raises(KeyboardInterrupt):
        work()


def test_a_ctrl_c_while_a_group_stops_after_an_error_leaves_the_error_as_it_is() -> None:
    def work() -> None:
        with _SignalledWhileStopping():
            raise ServiceError("the Pub/Sub emulator exited with code 1 while starting")

    with pytest.raises(ServiceError, match="exited with code 1"):
        work()


class _Finalized:
    """Something whose finalizer happens to be running when the signal's handler runs: Python
    reports the KeyboardInterrupt raised there as unraisable and goes on."""

    def __del__(self) -> None:
        _signal_self(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_group_remembers_an_interrupt_that_a_finalizer_swallowed() -> None:
    before = [signal.getsignal(sig) for sig in services.HELD_SIGNALS]
    with ServiceGroup() as group:
        group.check_interrupted()  # nothing yet

        _Finalized()  # the KeyboardInterrupt is raised inside __del__, and lost there

        with pytest.raises(KeyboardInterrupt):
            group.check_interrupted()

    assert [signal.getsignal(sig) for sig in services.HELD_SIGNALS] == before

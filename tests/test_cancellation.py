from studio.cancellation import CancelRegistry


def test_stop_reaches_only_its_owner() -> None:
    registry = CancelRegistry()
    with registry.job("alice") as alice, registry.job("bob") as bob:
        assert registry.cancel("alice")
        assert alice.is_set()
        assert not bob.is_set()


def test_a_stop_before_a_job_does_not_cancel_the_next_one() -> None:
    registry = CancelRegistry()
    assert not registry.cancel("alice")
    with registry.job("alice") as event:
        assert not event.is_set()
    assert not registry.cancel("alice"), "a finished job leaves nothing to cancel"

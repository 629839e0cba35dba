import pytest
from pydantic import BaseModel, ValidationError

from vaultline.domain.retry import PermanentError, TransientError, backoff_delay, is_permanent
from vaultline.events import InvalidEvent


class M(BaseModel):
    x: int


def _validation_error() -> ValidationError:
    try:
        M(x="nope")
    except ValidationError as e:
        return e
    raise AssertionError


@pytest.mark.parametrize(
    "exc,permanent",
    [
        (PermanentError("bad image"), True),
        (InvalidEvent("bad body"), True),
        (_validation_error(), True),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), True),
        (TransientError("later"), False),
        (ConnectionError("down"), False),
        (TimeoutError(), False),
        (RuntimeError("unknown"), False),
    ],
)
def test_classification(exc, permanent):
    assert is_permanent(exc) is permanent


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, base=0.5, cap=3) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]
    assert backoff_delay(0, base=1, cap=10) == 1

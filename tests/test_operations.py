"""One list of engine operations: every transport offers each of them with the engine's arguments."""
import inspect

import pytest

from dsr_backend.engine import OPERATIONS, Engine
from pymol_dsr import backend, remote


def arguments(function) -> list[tuple[str, object]]:
    """The wire arguments of a method: its positional-or-keyword parameters after ``self``, with defaults."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.default) for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]


def test_the_engine_declares_every_public_method_as_an_operation():
    public = {name for name, member in vars(Engine).items() if callable(member) and not name.startswith("_")}
    assert public - {"close"} == set(OPERATIONS)


def test_the_plugin_offers_the_engine_operations():
    assert backend.OPERATIONS == OPERATIONS


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("transport", [backend.Backend, backend.SubprocessBackend, remote.RemoteBackend])
def test_each_transport_takes_the_engine_arguments(transport, operation):
    engine_arguments = arguments(getattr(Engine, operation))
    if operation in vars(transport) or transport is backend.Backend:
        assert arguments(getattr(transport, operation)) == engine_arguments
    else:  # sent through the generic call, which binds the arguments by the Backend protocol
        assert transport is backend.SubprocessBackend
        assert arguments(getattr(backend.Backend, operation)) == engine_arguments


def test_a_missing_operation_is_not_sent():
    with pytest.raises(AttributeError):
        backend.SubprocessBackend.__getattr__(object.__new__(backend.SubprocessBackend), "train_everything")

"""Every library error has one HTTP shape: the caller's mistakes 4xx, the deployment's 5xx."""

from __future__ import annotations

import importlib
import pkgutil

import openrft.graders
import openrft.service
from openrft.errors import MissingResourceError, OpenRFTError, SandboxError, SpecError
from openrft.service.errors import UNMAPPED, ServiceError, http_shape


def _subclasses(kind: type[OpenRFTError]) -> set[type[OpenRFTError]]:
    found = set(kind.__subclasses__())
    return found.union(*(_subclasses(k) for k in list(found)))


def test_every_library_error_has_a_mapping() -> None:
    for package in (openrft.graders, openrft.service):  # define their errors on import
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    kinds = [k for k in _subclasses(OpenRFTError) if not issubclass(k, ServiceError)]
    assert kinds
    for kind in kinds:
        exc = kind.__new__(kind)
        assert http_shape(exc) is not UNMAPPED, f"{kind.__name__} has no HTTP mapping"


def test_server_faults_are_5xx_and_caller_mistakes_4xx() -> None:
    assert http_shape(SandboxError("no sandbox here")).status == 503
    assert http_shape(MissingResourceError("no WordNet")).status == 503
    spec = http_shape(SpecError([]))
    assert (spec.status, spec.code) == (400, "invalid_grader")


def test_error_messages_name_no_server_path() -> None:
    from openrft.api_errors import redact_paths

    logged = "OSError: /srv/openrft/jobs/ftjob-1/checkpoint-4 has no file named config.json"
    assert redact_paths(logged) == "OSError: …/checkpoint-4 has no file named config.json"
    known = {"/srv/openrft/models/base": "tiny", "/srv/openrft": "<data>"}
    assert redact_paths("no /srv/openrft/models/base/config.json", known) == "no tiny/config.json"
    assert redact_paths("at http://127.0.0.1:80/v1/chat, ratio 1/2") == (
        "at http://127.0.0.1:80/v1/chat, ratio 1/2"
    )

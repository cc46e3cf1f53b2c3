"""The API's graph download is bounded, and the digest tag names no file (issue 25, item 10).

Against the real MLflow server: tags written with MLflow's client, as anyone who can reach the
server could.
"""

from __future__ import annotations

from pathlib import Path

from iris_services.api.mlflow_rest import DIGEST_TAG
from iris_services.api.model_holder import ModelHolder
from iris_services.common import registry, signing
from iris_services.common.settings import ApiSettings, TrainerSettings
from iris_services.train import publish
from tests.services.test_api import rest


def _second_version_tagged(
    settings: ApiSettings, holder: ModelHolder, digest: str, signed: bool = False
) -> None:
    client = registry.configure(settings)
    publish.run(TrainerSettings())
    assert holder.refresh(), holder.last_error
    second = publish.run(TrainerSettings())
    mv = client.get_model_version(settings.model_name, second.version)
    client.set_logged_model_tags(mv.source.removeprefix("models:/"), {DIGEST_TAG: digest})
    if signed:  # as if by a trainer holding the key: the check behind the signature's
        key = signing.key_from_env()
        assert key is not None
        signature = signing.sign_version(key, settings.model_name, second.version, digest)
        client.set_model_version_tag(
            settings.model_name, second.version, signing.SIGNATURE_TAG, signature
        )


def test_a_digest_tag_that_is_a_path_names_no_file(service_env, tmp_path: Path) -> None:
    settings = ApiSettings()
    cache = tmp_path / "cache"
    holder = ModelHolder(rest(settings, cache))
    _second_version_tagged(settings, holder, "../../escaped")
    assert not holder.refresh()  # unsigned for that digest: refused before any file is named
    assert "signature does not match" in (holder.last_error or "")
    _second_version_tagged(settings, holder, "../../escaped", signed=True)  # v3 loads, v4 not
    assert not holder.refresh()
    assert holder.current is not None and holder.current.champion.version == "3"
    assert "64 hex digits" in (holder.last_error or "")
    assert not (tmp_path / "escaped.onnx").exists()
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*"))


def test_a_graph_over_the_size_cap_is_not_loaded(service_env, tmp_path: Path) -> None:
    settings = ApiSettings()
    registry_ = rest(settings, tmp_path)
    holder = ModelHolder(registry_)
    registry.configure(settings)
    publish.run(TrainerSettings())
    assert holder.refresh(), holder.last_error
    publish.run(TrainerSettings())
    for cached in tmp_path.glob("*.onnx"):  # the same seed may compile the same graph
        cached.unlink()
    registry_.max_graph_bytes = 1000  # our graphs are tens of KB: this one is "too big"
    assert not holder.refresh()
    assert holder.current is not None and holder.current.champion.version == "1"
    assert "over 1000 bytes" in (holder.last_error or "")

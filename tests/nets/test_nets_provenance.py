"""What built a model: the run.built_by record of built-ins, plugin factories and installed packages."""

from __future__ import annotations

import json

import pytest

from engine.config import ArchSpec
from engine.nets import FactoryError, describe_built_by, provenance


def test_builtin_record():
    record = provenance(ArchSpec(name="mlp", width=16, depth=3))
    assert record["builtin"] == "mlp" and record["width"] == 16 and record["depth"] == 3
    assert describe_built_by(record) == "built-in mlp"
    json.dumps(record)


def test_plugin_record_hashes_the_source_file(plugin_dir):
    import hashlib

    spec = ArchSpec(factory="my_models:WideNet", kwargs={"width": 8})
    record = provenance(spec)
    source = plugin_dir / "my_models.py"
    assert record == {"factory": "my_models:WideNet", "kwargs": {"width": 8}, "output": None, "source": "plugin",
                      "source_file": "my_models.py",
                      "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert describe_built_by(record) == f"my_models:WideNet(width=8) · my_models.py@{record['source_sha256'][:8]}"


def test_hash_changes_when_the_source_changes(plugin_dir):
    spec = ArchSpec(factory="my_models:WideNet")
    before = provenance(spec)["source_sha256"]
    source = plugin_dir / "my_models.py"
    source.write_text(source.read_text() + "\n# width 16 next time\n")
    after = provenance(spec)
    assert after["source_sha256"] != before
    assert provenance(spec)["source_sha256"] == after["source_sha256"]  # deterministic


def test_package_module_paths_are_relative_to_the_plugin_folder(plugin_dir):
    record = provenance(ArchSpec(factory="visionzoo.models:resnet18", kwargs={"num_classes": 10}))
    assert record["source_file"] == "visionzoo/models.py"


def test_installed_package_records_name_and_version():
    import transformers

    record = provenance(ArchSpec(factory="transformers:ResNetForImageClassification", output="logits",
                                 kwargs={"config": {"num_labels": 10}}))
    assert record["source"] == "installed"
    assert (record["package"], record["version"]) == ("transformers", transformers.__version__)
    assert record["source_file"] == "transformers/models/resnet/modeling_resnet.py"
    assert len(record["source_sha256"]) == 64
    assert "→ .logits" in describe_built_by(record) and f"transformers {transformers.__version__}@" in \
        describe_built_by(record)


def test_provenance_follows_the_loading_rules(clean_plugins):
    with pytest.raises(FactoryError, match=r"no module named 'my_models'"):
        provenance(ArchSpec(factory="my_models:WideNet"))

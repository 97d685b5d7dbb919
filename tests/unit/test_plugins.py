"""Open registries and plug-ins: names known before torch, plug-ins by path, module and
entry point, and their errors as one line with exit status 2."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap

import pytest

from hpc_fedprune.cli import main
from hpc_fedprune.comm.world import World
from hpc_fedprune.config import load_config
from hpc_fedprune.config.printing import used_dict
from hpc_fedprune.errors import InputError
from hpc_fedprune.plugins import load_plugins
from hpc_fedprune.registry import ALGORITHMS, DATASETS, MODELS, PARTITIONS, Registry
from tests.helpers import REPO, child_env, registries_restored

REGISTRIES = (DATASETS, PARTITIONS, MODELS, ALGORITHMS)


@pytest.fixture(autouse=True)
def _no_names_left_behind():
    with registries_restored():
        yield


def run_here(*argv) -> tuple[int, str, str]:
    """``python -m hpc_fedprune ARGV`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(World, "finalize", lambda self: None)  # MPI stays up for the next run
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


# --- the registries ---------------------------------------------------------------------


def test_builtin_names_are_checked_without_importing_torch():
    """The fast check of a config knows every built-in name, imports none of their code."""
    code = (
        "import sys\n"
        "from hpc_fedprune.config import load_config\n"
        "c = load_config(None, ['data.name=cifar100', 'model.name=vgg11', "
        "'algorithm.name=feddst', 'partition.scheme=shards'])\n"
        "try:\n"
        "    load_config(None, ['model.name=vgg12'])\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
        "heavy = ('torch', 'numpy', 'hpc_fedprune.models.zoo')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    message, imported = proc.stdout.splitlines()
    assert message.startswith("model.name: 'vgg12' is not one of mlp, lenet5,")
    assert message.endswith("did you mean 'vgg11'?")
    assert imported == "[]"


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.what)
def test_every_declared_builtin_name_is_registered_by_its_module(registry):
    declared = registry.names()
    for name in declared:
        registry.get(name)  # imports the home module; raises if it did not register it
    assert set(registry._entries) >= set(declared)  # noqa: SLF001


def test_registry_refuses_a_taken_name_and_a_builtin_one():
    reg = Registry("thing", builtin=("a",), home=None)
    reg.add("b", object(), owner="user_pkg")
    with pytest.raises(InputError, match="thing 'b' registered twice"):
        reg.add("b", object(), owner="user_pkg")
    with pytest.raises(InputError, match="thing 'a' registered twice"):
        reg.add("a", object(), owner="user_pkg")
    reg.add("a", 1, owner="hpc_fedprune.things")  # the package registering its own
    assert reg.names() == ("a", "b") and "b" in reg and reg.get("a") == 1


def test_unknown_name_hints_at_plugins():
    with pytest.raises(InputError) as info:
        load_config(None, ["algorithm.name=quantum_avg"])
    assert str(info.value).endswith("(a plug-in's? name it in plugins: or with --plugin)")


# --- plug-ins -------------------------------------------------------------------------


def test_plugin_file_from_config_key_and_flag(tmp_path):
    plugin = write(
        tmp_path / "halves.py",
        """
        from hpc_fedprune.registry import PARTITIONS

        @PARTITIONS.register("test_halves")
        def halves(labels, k, *, rng):
            return [list(range(i, len(labels), k)) for i in range(k)]
        """,
    )
    config = tmp_path / "c.yaml"
    config.write_text(f"plugins: [{plugin}]\npartition: {{scheme: test_halves}}\n")
    loaded = load_config(config)
    assert loaded.partition.scheme == "test_halves"
    assert loaded.plugins == (str(plugin),)
    assert "test_halves" in PARTITIONS.names()
    # The flag is recorded in the config, before the config's own; named twice, loaded once.
    code, out, err = run_here(
        "config", "show", "--config", str(config), "--plugin", "json", "--plugin", str(plugin)
    )
    assert code == 0, err
    assert out.startswith(f"plugins: [json, {plugin}]\n")


def test_algorithm_options_is_a_mapping():
    config = load_config(None, ["algorithm.options={every: 3, rate: 0.5}", "model.name=mlp"])
    assert config.algorithm.options == {"every": 3, "rate": 0.5}
    used = used_dict(config)  # a key, not the section of a method not chosen
    assert used["algorithm"] == {"name": "fedavg", "options": {"every": 3, "rate": 0.5}}
    assert "options" not in used["model"] and "mlp" in used["model"]  # unset: dropped
    with pytest.raises(InputError, match="algorithm.options: expected a mapping"):
        load_config(None, ["algorithm.options=[1, 2]"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "x = 1 / 0\n",
            "plug-in {path} failed to import: ZeroDivisionError: division by zero",
        ),
        (
            "from hpc_fedprune.registry import DATASETS\n"
            "DATASETS.register('synthetic')(lambda *, root, seed: None)\n",
            "plug-in {path}: data set 'synthetic' registered twice",
        ),
        ("def broken(:\n", "plug-in {path} failed to import: SyntaxError: "),
    ],
    ids=["raises", "duplicate", "syntax"],
)
def test_plugin_errors_are_one_line_and_exit_2(tmp_path, body, expected):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(body)
    code, out, err = run_here("run", "--out", str(tmp_path / "r"), "--plugin", str(plugin))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: " + expected.format(path=plugin))
    assert not (tmp_path / "r").exists()


def test_missing_plugin_module_and_file(tmp_path):
    with pytest.raises(InputError, match=r"^plug-in no_such_pkg\.methods: no module named"):
        load_plugins(["no_such_pkg.methods"], entry_points=False)
    with pytest.raises(InputError, match=r"^plug-in nowhere/x\.py: no such file nowhere/x\.py"):
        load_plugins(["nowhere/x.py"], entry_points=False)


def test_entry_point_plugins_are_imported(tmp_path, monkeypatch):
    """An installed package declaring group hpc_fedprune.plugins is imported unasked."""
    write(
        tmp_path / "ep_methods.py",
        """
        from hpc_fedprune.algorithms import Algorithm
        from hpc_fedprune.registry import ALGORITHMS

        ALGORITHMS.register("test_entry_point_avg")(type("EpAvg", (Algorithm,), {}))
        """,
    )
    info = tmp_path / "ep_methods-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hpc_fedprune.plugins]\nmine = ep_methods\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "test_entry_point_avg" not in ALGORITHMS
    config = load_config(None, ["algorithm.name=test_entry_point_avg"])
    assert config.algorithm.name == "test_entry_point_avg"
    assert ALGORITHMS.get("test_entry_point_avg").__name__ == "EpAvg"

